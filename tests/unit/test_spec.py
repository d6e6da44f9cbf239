from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.params import apply_overrides, substitute
from orchestrator.spec import load_spec, parse_memory
from orchestrator.units import parse_duration

GOOD = """\
version: 1
name: t
image:
  ref: img@sha256:{h}
command: [python3, train.py, --lr, "{{params.lr}}", --seed, "{{seed}}"]
params:
  lr: 0.1
  epochs: 3
  arch: mlp
  aug: true
resources:
  cpus: 2
  memory: 512m
""".format(h="a" * 64)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def err(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, text))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_good_spec_loads_with_defaults(tmp_path):
    loaded = load_spec(write(tmp_path, GOOD))
    s = loaded.spec
    assert s.name == "t" and s.network == "none" and s.determinism == "strict"
    assert s.outputs.include == ["**"] and s.outputs.exclude == [] and s.resources.threads == 2
    assert parse_memory(s.resources.memory) == 512 << 20
    assert s.params == {"lr": 0.1, "epochs": 3, "arch": "mlp", "aug": True}
    assert type(s.params["epochs"]) is int and type(s.params["aug"]) is bool


def test_unknown_key_names_file_line_and_choices(tmp_path):
    msg = err(tmp_path, GOOD + "  gpu: 1\n")
    assert msg.startswith(f"{tmp_path / 'spec.yaml'}:14: resources.gpu: unknown key")
    assert "cpus, gpus, memory" in msg


def test_wrong_type_names_line_and_value(tmp_path):
    msg = err(tmp_path, GOOD.replace("cpus: 2", "cpus: lots"))
    assert ":12: resources.cpus:" in msg and "'lots'" in msg


def test_missing_field(tmp_path):
    msg = err(tmp_path, GOOD.replace("name: t\n", ""))
    assert "name: Field required" in msg


def test_unknown_version(tmp_path):
    msg = err(tmp_path, GOOD.replace("version: 1", "version: 7"))
    assert ":1: version: must be 1 (got 7)" in msg


def test_malformed_yaml(tmp_path):
    msg = err(tmp_path, "version: 1\nname: [unclosed\n")
    assert "invalid YAML" in msg and str(tmp_path / "spec.yaml") in msg


def test_duplicate_key(tmp_path):
    msg = err(tmp_path, GOOD + "name: again\n")
    assert "spec.yaml:14: name: duplicate key" in msg


def test_image_needs_exactly_one_source(tmp_path):
    msg = err(tmp_path, GOOD.replace("  ref: img", "  build: python\n  ref: img"))
    assert "image:" in msg and "exactly one" in msg


def test_command_placeholder_must_name_a_param(tmp_path):
    msg = err(tmp_path, GOOD.replace("{params.lr}", "{params.rate}"))
    assert ":5: command.3: {params.rate} names no param" in msg


def test_output_glob_cannot_escape(tmp_path):
    msg = err(tmp_path, GOOD + "outputs: ['../x']\n")
    assert ": outputs: output glob" in msg and "inside the working folder" in msg
    msg = err(tmp_path, GOOD + "outputs: {exclude: ['/etc/*']}\n")
    assert "outputs.exclude" in msg and "inside the working folder" in msg
    (tmp_path / "d.bin").write_text("d")
    msg = err(tmp_path, GOOD + "inputs: {d: {path: d.bin, mount: ../d.bin}}\n")
    assert "inputs.d.mount" in msg and "inside the working folder" in msg


def test_secret_also_in_env_is_refused(tmp_path):
    msg = err(tmp_path, GOOD + "env: {TOKEN: x}\nsecrets: [TOKEN]\n")
    assert "TOKEN is both in env and secrets" in msg


def test_param_override_converts_to_declared_type(tmp_path):
    loaded = load_spec(write(tmp_path, GOOD))
    new = apply_overrides(loaded, ["lr=0.01", "epochs=5", "arch=cnn", "aug=false"])
    assert new.spec.params == {"lr": 0.01, "epochs": 5, "arch": "cnn", "aug": False}
    assert loaded.spec.params["lr"] == 0.1  # the original is untouched


@pytest.mark.parametrize("override, needle", [
    ("epochs=2.5", "params.epochs is a int"),
    ("lr=fast", "params.lr is a float"),
    ("aug=maybe", "params.aug is a bool"),
    ("momentum=0.9", "declares no param 'momentum'"),
    ("lr", "expected NAME=VALUE"),
])
def test_bad_param_override(tmp_path, override, needle):
    loaded = load_spec(write(tmp_path, GOOD))
    with pytest.raises(SpecError, match=needle):
        apply_overrides(loaded, [override])


def test_substitute():
    assert substitute("--lr={params.lr}", {"lr": 0.1}, 7) == "--lr=0.1"
    assert substitute("{seed}:{params.on}", {"on": True}, 7) == "7:true"
    assert substitute("print(f'{x}')", {}, 7) == "print(f'{x}')"


def test_parsers():
    assert parse_memory("2g") == 2 << 30 and parse_memory("1.5GiB") == int(1.5 * 2**30)
    assert parse_duration("10m") == 600 and parse_duration(90) == 90
    with pytest.raises(ValueError):
        parse_memory("lots")
    with pytest.raises(ValueError):
        parse_duration("-1")


def test_a_bare_off_is_determinism_off(tmp_path):
    """YAML 1.1 reads a bare `off` as false; the spec means the word."""
    loaded = load_spec(write(tmp_path, GOOD + "determinism: off\n"))
    assert loaded.spec.determinism == "off"


def test_every_spec_error_is_listed_at_once_in_file_order(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("version: 1\nname: 'bad name'\nimage: {build: x}\ncommand: [a, '{params.b}']\n"
                 "resources: {cpus: -1}\nseed: -3\ninputs: {d: {path: no.bin}}\n"
                 "packages: {lock: none.lock}\nenv: {REPRO_X: '1'}\ntimeout: 5\ntimeout: 6\n")
    with pytest.raises(SpecError) as e:
        load_spec(p)
    lines = str(e.value).splitlines()
    # the document's, the references' and the paths' problems together, in file order
    assert [ln.split(": ")[1] for ln in lines] == [
        "name", "image.build", "command.1", "resources.cpus", "seed", "inputs.d.path",
        "packages.lock", "env.REPRO_X", "timeout"]
    assert all(ln.startswith(f"{p}:") for ln in lines)
    assert "{params.b} names no param (params: none declared); declare it under params" \
        in lines[2]
    assert lines[-1].endswith(":11: timeout: duplicate key; keep one")


def test_an_unclosed_bracket_names_where_it_was_opened(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("version: 1\nname: x\ncommand: [python3,\n  a\nimage: {build: x}\n")
    with pytest.raises(SpecError, match=r"bad.yaml:5: invalid YAML: .* flow sequence that "
                                        r"began at line 3"):
        load_spec(p)
