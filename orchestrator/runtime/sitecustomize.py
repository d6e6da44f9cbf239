"""repro's zero-touch seeding. Python imports ``sitecustomize`` at start-up, and repro puts
this folder on every job's PYTHONPATH, so an unmodified, unseeded script replays identical.

Under ``determinism: strict`` (REPRO_DETERMINISM=strict, REPRO_SEED set):

- ``random`` is seeded at once;
- numpy and torch are seeded the moment the job imports them (an import hook: importing them
  here would cost every Python process in the container their import time), numpy's
  ``default_rng()`` without a seed gets one derived from the run's seed, and torch is switched
  to deterministic algorithms (warn-only where an op has none, those warnings recorded),
  cuDNN benchmarking off;
- what was seeded, and each determinism warning, is written to /repro/meta/seeded.jsonl for
  the record.

In every mode, ``os.cpu_count()`` counts the cores the job is pinned to (its cpuset).

`repro diagnose` turns single controls on in runs that lack them: REPRO_FORCE_SEEDS=1 (the
seeding above, without torch's deterministic algorithms), REPRO_TORCH_DETERMINISTIC=1 (those
algorithms and cuDNN settings, without seeding), and REPRO_FROZEN_CLOCK=EPOCH: the wall clock
as Python reads it (time.time/time_ns, localtime/gmtime/ctime/asctime/strftime without a time,
datetime.now/utcnow/today, date.today, and so pandas' Timestamp.now) stands still at EPOCH,
the datetime types left as they are (compiled code checks them). Clocks read in C
(numpy's datetime64('now'), a shell's date) run on. Monotonic clocks and sleeps run as
usual: libfaketime with a frozen clock was measured to hang ``threading.Event.wait`` and to
fail ``time.sleep`` (EINVAL) when the monotonic clock is left real.

Any other ``sitecustomize`` on the path (Debian ships one) still runs after this one.
Zero dependencies, Python 3.8+.
"""

import os
import sys

META_DIR = os.environ.get("REPRO_META_DIR", "/repro/meta")  # set only by repro's tests


def _note(**item):
    from _repro_torch import note  # one writer of seeded.jsonl, beside this file

    note(**item)


class _Seeder:
    """A meta-path finder that lets numpy and torch load as usual, then seeds them."""

    def __init__(self, seed, seeds=True, deterministic=True):
        self.seed = seed
        self.seeds, self.deterministic = seeds, deterministic
        self.busy = set()
        self.rngs = 0

    def find_spec(self, name, path=None, target=None):
        if name not in ("numpy", "torch") or name in self.busy:
            return None
        if name == "numpy" and not self.seeds:
            return None
        import importlib.util

        self.busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, seeder = spec.loader, self
        load = loader.exec_module

        def exec_module(module):
            load(module)
            try:
                getattr(seeder, "seed_" + name)(module)
            except Exception as e:  # seeding must never break the job's import
                _note(failed=name, error=type(e).__name__ + ": " + str(e))

        loader.exec_module = exec_module
        return spec

    def seed_numpy(self, numpy):
        numpy.random.seed(self.seed % 2**32)
        plain = numpy.random.default_rng
        seeder = self

        def default_rng(seed=None):
            if seed is None:  # a fresh generator per call, each derived from the run's seed
                seeder.rngs += 1
                seed = numpy.random.SeedSequence(seeder.seed, spawn_key=(seeder.rngs,))
            return plain(seed)

        numpy.random.default_rng = default_rng
        _note(seeded="numpy")

    def seed_torch(self, torch):
        if self.seeds:
            torch.manual_seed(self.seed)
            _note(seeded="torch")
        if self.deterministic:
            from _repro_torch import make_deterministic  # repro.seed_everything's too

            make_deterministic(torch)


def _main():
    strict = os.environ.get("REPRO_DETERMINISM") == "strict"
    seeds = strict or os.environ.get("REPRO_FORCE_SEEDS") == "1"
    deterministic = strict or os.environ.get("REPRO_TORCH_DETERMINISTIC") == "1"
    if not (seeds or deterministic) or not os.path.isdir(META_DIR):
        return
    try:
        seed = int(os.environ["REPRO_SEED"])
    except (KeyError, ValueError):
        return
    if seeds:
        import random

        random.seed(seed)
        _note(seeded="random")
    sys.meta_path.insert(0, _Seeder(seed, seeds, deterministic))


def _freeze_clock():
    """The wall clock stands still at REPRO_FROZEN_CLOCK (seconds since the epoch)."""
    try:
        at = float(os.environ["REPRO_FROZEN_CLOCK"])
    except (KeyError, ValueError):
        return
    import datetime
    import time

    ns = int(round(at * 1e9))
    real = {n: getattr(time, n) for n in ("localtime", "gmtime", "ctime", "asctime",
                                           "strftime")}
    time.time = lambda: at
    time.time_ns = lambda: ns
    time.localtime = lambda secs=None: real["localtime"](at if secs is None else secs)
    time.gmtime = lambda secs=None: real["gmtime"](at if secs is None else secs)
    time.ctime = lambda secs=None: real["ctime"](at if secs is None else secs)
    time.asctime = lambda t=None: real["asctime"](real["localtime"](at) if t is None else t)
    time.strftime = lambda fmt, t=None: real["strftime"](
        fmt, real["localtime"](at) if t is None else t)
    # datetime.now/utcnow and date.today read the clock in C: their entries in the types'
    # own dicts are replaced, the types stay the same objects. A subclass in their place
    # (freezegun's way) breaks compiled code that checks the types' size or identity: pandas
    # raised "Cannot convert datetime.datetime" or crashed (exit 139).
    utc = datetime.timezone.utc  # noqa: UP017 (Python 3.8 in the image)

    def now(cls, tz=None):
        return cls.fromtimestamp(at, tz)

    def utcnow(cls):
        return cls.fromtimestamp(at, utc).replace(tzinfo=None)

    def today(cls):
        return cls.fromtimestamp(at)

    try:
        _set_method(datetime.date, "today", classmethod(today))
        _set_method(datetime.datetime, "today", classmethod(today))
        _set_method(datetime.datetime, "now", classmethod(now))
        _set_method(datetime.datetime, "utcnow", classmethod(utcnow))
    except Exception as e:  # no ctypes here: time.* stays frozen, datetime runs
        _note(frozen_clock=at, datetime_left_running=type(e).__name__ + ": " + str(e))
        return
    _note(frozen_clock=at)


def _set_method(cls, name, value):
    """Set ``cls.name`` on a built-in type, whose attributes cannot be set: through the
    type's own dict (behind its read-only proxy), then tell the type cache it changed."""
    import ctypes
    import gc

    own = [d for d in gc.get_referents(cls.__dict__) if isinstance(d, dict)]
    if len(own) != 1:
        raise RuntimeError("the dict of " + cls.__name__ + " is not reachable")
    own[0][name] = value
    ctypes.pythonapi.PyType_Modified(ctypes.py_object(cls))


def _cpu_count():
    """os.cpu_count() as the cores this job may use: repro pins whole-core ``cpus`` with a
    cpuset, which Python before 3.13 does not look at (3.13's PYTHON_CPU_COUNT is set too)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if usable and usable < (os.cpu_count() or usable):
        os.cpu_count = lambda: usable


def _chain():
    """Run the next ``sitecustomize`` on the path, as if this one were not here."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_cpu_count()
_freeze_clock()
_main()
try:
    _chain()
except Exception:  # another sitecustomize failing must not stop the job
    pass
