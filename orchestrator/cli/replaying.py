"""Commands that run a recorded run again and judge it: `replay`, `verify`, `diagnose`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..replay import Grants

from .base import (
    AccountOpt,
    ExecutorOpt,
    GpusOpt,
    InputOpt,
    JsonOpt,
    LocalImageOpt,
    NetworkOpt,
    PartitionOpt,
    QosOpt,
    QuietOpt,
    SbatchOpt,
    SecretOpt,
    StrictEnvOpt,
    TimeoutOpt,
    TolOpt,
    app,
    detachable,
    exit_with,
    is_foreign,
    path_exists,
    recovered,
    render_replay,
    run_hooks,
    store_of,
    verdict_exit,
    where_of,
)


def grants_of(allow_network: bool, secret: list[str] | None, input_: list[str] | None,
            timeout: str | None, gpus: int = 0, local_image: bool = False) -> Grants:
    from ..errors import UsageError
    from ..replay import Grants
    from ..units import parse_duration

    inputs = {}
    for item in input_ or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--input {item!r}: expected NAME=PATH")
        inputs[name] = Path(path)
    try:
        seconds = parse_duration(timeout, "--timeout") if timeout else None
    except ValueError as e:
        raise UsageError(f"--timeout {timeout}: {e}") from None
    return Grants(network=allow_network, secrets=tuple(secret or ()), inputs=inputs,
                  timeout_s=seconds, gpus=gpus, local_image=local_image)


@app.command()
def replay(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) to replay.")],
    tolerance: TolOpt = None,
    strict_env: StrictEnvOpt = False,
    allow_network: NetworkOpt = False,
    secret: SecretOpt = None,
    input_: InputOpt = None,
    timeout: TimeoutOpt = None,
    gpus: GpusOpt = 0,
    local_image: LocalImageOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    sbatch_option: SbatchOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a recorded run again from its record alone and compare every output bit for bit
    (here, or on a Slurm node with --executor slurm)."""
    from ..engine import connect
    from ..replay import replay as replay_run
    from ..scheduler import replay_elsewhere
    from ..tolerances import parse_tolerances
    tolerances = parse_tolerances(tolerance or [])
    grants = grants_of(allow_network, secret, input_, timeout, gpus, local_image)
    where = where_of(executor, partition, account, qos, sbatch_option)
    store = store_of(run)
    original = store.runs.get(run)
    hooks = run_hooks(quiet, is_foreign(original, store), table=not json_)
    with detachable():
        rec = replay_run(original, store, connect(), hooks, tolerances, strict_env, grants,
                         replay_elsewhere(where, store, hooks))
    render_replay(rec, store, json_)
    exit_with(verdict_exit(rec))


@app.command()
def verify(
    target: Annotated[str, typer.Argument(
        help="Run id (or prefix), or an exported bundle folder / manifest.json.")],
    tolerance: TolOpt = None,
    strict_env: StrictEnvOpt = False,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Also write a JUnit XML report here.")] = None,
    allow_network: NetworkOpt = False,
    secret: SecretOpt = None,
    input_: InputOpt = None,
    timeout: TimeoutOpt = None,
    gpus: GpusOpt = 0,
    local_image: LocalImageOpt = False,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    qos: QosOpt = None,
    sbatch_option: SbatchOpt = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=0, metavar="N",
        help="Verify a prefix: stop the job once its metric series reach step N and compare "
             "every recorded point up to it, and the log so far (not the outputs).")] = None,
    budget: Annotated[str | None, typer.Option(
        "--budget", metavar="DURATION",
        help="Verify the most steps that fit in DURATION (e.g. 5m), from the original's "
             "steps and duration.")] = None,
    segment: Annotated[str | None, typer.Option(
        "--segment", metavar="STEP|random",
        help="Verify a segment: resume from the recorded checkpoint of STEP (the spec's "
             "resume:), run to the next one and compare it and the steps between; random "
             "draws one with a printed seed (random:SEED draws it again).")] = None,
    json_: JsonOpt = False,
) -> None:
    """CI gate: replay (here, or on a Slurm node with --executor slurm) and exit 0 only if
    the recorded result reproduces. With --steps or --budget, only the first steps run; with
    --segment, the steps from one checkpoint to the next.

    Exit codes: 0 identical (or within --tolerance), 8 differs, 9 cannot replay (something
    it needs is missing or corrupt), 11 nothing compared (no outputs, no metrics, logs not
    compared), 12 identical through the steps a prefix verify ran (the rest did not run),
    13 a segment identical, 2 bad input (a malformed bundle), 4 unknown run, 5 environment
    (no engine), 3/6/130 as for launch when the job fails, times out or is interrupted."""
    from ..engine import connect
    from ..errors import UsageError
    from ..scheduler import replay_elsewhere
    from ..store import open_store
    from ..tolerances import parse_tolerances
    from ..verify import junit as junit_xml
    from ..verify import verify as verify_run

    tolerances = parse_tolerances(tolerance or [])
    grants = grants_of(allow_network, secret, input_, timeout, gpus, local_image)
    where = where_of(executor, partition, account, qos, sbatch_option)
    budget_s = _budget(budget, steps, segment)
    bundle = path_exists(target)
    if not bundle and ("/" in target or target.endswith(".json")):
        raise UsageError(f"{target}: no such bundle folder or manifest")
    store = recovered(open_store()) if bundle else store_of(target)
    hooks = run_hooks(quiet, bundle or is_foreign(store.runs.get(target), store),
                      table=not json_)
    with detachable():
        original, rec = verify_run(target, store, connect(), hooks, tolerances, strict_env,
                                   grants, replay_elsewhere(where, store, hooks),
                                   steps=steps, budget_s=budget_s, segment=segment)
    if junit is not None:
        junit.write_text(junit_xml(original, rec))
    render_replay(rec, store, json_)
    exit_with(verdict_exit(rec))


def _budget(budget: str | None, steps: int | None, segment: str | None) -> float | None:
    """--budget in seconds; one of --steps, --budget and --segment at most."""
    from ..errors import UsageError
    from ..units import parse_duration

    given = [o for o, v in (("--steps", steps), ("--budget", budget), ("--segment", segment))
             if v is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} each say which part to verify: give one")
    if budget is None:
        return None
    try:
        return parse_duration(budget, "--budget")
    except ValueError as e:
        raise UsageError(f"--budget {budget}: {e}") from None


@app.command()
def diagnose(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) to diagnose.")],
    replays: Annotated[int, typer.Option(
        "--replays", "-k", min=1, max=20,
        help="Plain replays first: does the run agree with itself on this host?")] = 2,
    parallel: Annotated[int | None, typer.Option(
        "-j", "--parallel", min=1, max=64,
        help="Independent replays run at once (default: as many as this host's CPUs and "
             "memory hold at the run's cpus and memory; 1 with GPUs).")] = None,
    allow_network: NetworkOpt = False,
    secret: SecretOpt = None,
    input_: InputOpt = None,
    timeout: TimeoutOpt = None,
    gpus: GpusOpt = 0,
    local_image: LocalImageOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Say why a run does not reproduce: replay it K times, then with every control on (the
    wall clock frozen, seeds forced, PYTHONHASHSEED fixed, one thread, deterministic GPU
    kernels) and with each control off in turn; name the cause of each differing output,
    where in the file it shows, and the fix to try. Stored with the run (`repro show`, the
    dashboard). Every experiment is a replay recorded in the store.

    Exit codes: 0 diagnosed (whatever it found), 9 cannot replay, 4 unknown run, 5 no
    engine, 130 interrupted."""
    from .. import ui, ui_run
    from ..diagnose import diagnose as diagnose_run
    from ..diagnose import side_by_side
    from ..engine import connect
    from ..store import open_store

    grants = grants_of(allow_network, secret, input_, timeout, gpus, local_image)
    store = store_of(run)
    original = store.runs.get(run)
    doc = diagnose_run(original, store, connect(), (lambda _: None) if quiet else ui.progress,
                       replays, grants, at_once=side_by_side(original, parallel),
                       opener=lambda: (open_store(store.home), connect()))
    if json_:
        ui.print_json(doc.model_dump(mode="json"))
    else:
        ui_run.render_diagnosis(doc)
