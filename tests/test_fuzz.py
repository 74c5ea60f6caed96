"""Fuzzing the command line (issue 16.5): hypothesis-generated space files (mutations of the
shipped ones) and option values for ``search``, ``train``, ``profile``, ``show``,
``leaderboard`` and ``report``, run in-process through click's ``CliRunner`` isolation (and a
few subprocesses). Every case either succeeds or exits 2 with exactly one line on stderr and
no traceback, and leaves no partial file (``.*.tmp``) and, when refused, nothing at all.

The example budget is fixed by a hypothesis profile: ``ci`` (the default: derandomized, so
every run draws the same cases, the whole file well under a minute on a quiet machine) or
``long`` (``AFFINITY_FUZZ=long``: ~25x the cases, random seeds, for local runs).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity.search._files import shipped_spaces_paths
from tests._cli import Ran, run_main

optuna.logging.set_verbosity(optuna.logging.WARNING)

_COMMON = {"deadline": None, "suppress_health_check": list(HealthCheck), "print_blob": True}
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("long", derandomize=False, **_COMMON)
PROFILE = os.environ.get("AFFINITY_FUZZ", "ci")
SCALE = 25 if PROFILE == "long" else 1


def budget(n: int) -> settings:
    """``n`` examples (times 25 under the long profile)."""
    return settings(settings.get_profile(PROFILE), max_examples=n * SCALE)


SHIPPED = {
    name: yaml.safe_load(path.read_text(encoding="utf-8")) for name, path in shipped_spaces_paths().items()
}

# ---------------------------------------------------------------------------------------
# values a careless user (or a broken editor) puts in a file or on the command line

HUGE = [10**6, 2**31, 2**63, 10**30, -(10**30), 1e308, -1e308, 1e-320]
SMALL_INTS = st.integers(min_value=-3, max_value=12)
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", " ", "axial_shift", "zero", "ünïcødé", "😀", "\u202e", "a" * 300, "1e400", "nan", "-1"]
    ),
)
SEARCHED = st.sampled_from(
    [
        {"choice": []},
        {"choice": [1, 1]},
        {"choice": "abc"},
        {"choice": [[8, 16], [8]]},
        {"choice": [{"a": 1}]},
        {"int": [5, 1]},
        {"int": [1, 10**12]},
        {"int": [1, 3], "step": 0},
        {"int": [0, 4], "log": True},
        {"int": [1.5, 2]},
        {"float": [0, 1], "log": True},
        {"float": [1e-300, 1e300], "log": True},
        {"float": [0.1, 0.9], "step": 0.2},
        {"choice": [1], "int": [1, 2]},
        {"choice": ["axial_shift+attention", "dwconv"]},
        {"choice": ["no_such_kind"]},
        {"int": [1, 2], "huh": 1},
    ]
).map(copy.deepcopy)  # a mutation may change it in place: each draw gets its own


def values(huge: bool) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        SMALL_INTS,
        st.floats(allow_nan=True, allow_infinity=True),
        TEXT,
        *([st.sampled_from(HUGE)] if huge else []),
    )
    return st.one_of(
        scalars,
        SEARCHED,
        st.lists(scalars, max_size=4),
        st.dictionaries(TEXT, scalars, max_size=3),
    )


# ---------------------------------------------------------------------------------------
# space files: the shipped ones, mutated


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into ``doc`` (mapping keys and list indices), 6 levels deep at most
    (a mutation may have made it cyclic or deep)."""
    yield at
    if len(at) >= 6:
        return
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from _paths(value, (*at, key))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    if path:
        del _get(doc, path[:-1])[path[-1]]
    return doc


@st.composite
def mutated_space(draw: st.DrawFn, base: str | None = None, *, huge: bool = True) -> bytes:
    """A shipped space file after 1-3 mutations of its document, then maybe of its text."""
    doc = copy.deepcopy(SHIPPED[base or draw(st.sampled_from(sorted(SHIPPED)))])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        op = draw(st.sampled_from(["replace", "delete", "extra", "alias", "cycle", "nest"]))
        node = _get(doc, path)
        if op == "replace":
            doc = _set(doc, path, draw(values(huge)))
        elif op == "delete":
            doc = _delete(doc, path)
        elif op == "extra" and isinstance(node, dict):
            node[draw(TEXT)] = draw(values(huge))
        elif op == "alias":  # the same object twice: dumped as a YAML anchor and alias
            other = draw(st.sampled_from(list(_paths(doc))))
            doc = _set(doc, path, _get(doc, other))
        elif op == "cycle" and isinstance(node, (dict, list)):  # an alias of itself
            if isinstance(node, dict):
                node["self"] = node
            else:
                node.append(node)
        elif op == "nest":
            depth = draw(st.sampled_from([1, 3, 30, 300]))
            for _ in range(depth):
                node = [node] if draw(st.booleans()) else {"choice": [node]}
            doc = _set(doc, path, node)
    try:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode()
    except RecursionError:
        text = ("[" * 5000).encode()  # deeper than the dumper goes: the reader sees it raw
    edit = draw(st.sampled_from(["none", "none", "truncate", "insert", "bom", "latin1"]))
    if edit == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif edit == "insert":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from([b"\t", b": :", b"&a", b"*nope", b"\x00", b"- [", b"{"]))
            + text[at:]
        )
    elif edit == "bom":
        text = b"\xef\xbb\xbf" + text
    elif edit == "latin1":
        text = text + "# caf\xe9".encode("latin-1")
    return text


# ---------------------------------------------------------------------------------------
# running a case and checking its outcome


@contextmanager
def fresh_folder(root: Path) -> Iterator[Path]:
    """A new empty working folder for one example (hypothesis reuses the test's tmp_path)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(dir=root))
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(old)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def check(ran: Ran, folder: Path, before: set[str]) -> None:
    """Success, or exit 2 with one line and nothing written; never a partial file."""
    assert "Traceback" not in ran.stdout + ran.stderr, ran
    assert ran.code in (0, 2), ran
    after = _files(folder)
    assert not [f for f in after if f.endswith(".tmp")], after
    if ran.code == 2:
        lines = ran.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("affinity"), ran
        assert after - before <= {f for f in after if f.endswith(".lock")}, after - before


def run_case(folder: Path, argv: list[str]) -> Ran:
    before = _files(folder)
    ran = run_main(argv)
    check(ran, folder, before)
    return ran


# ---------------------------------------------------------------------------------------
# search


@budget(60)
@given(text=mutated_space())
def test_search_check_takes_any_space_file(tmp_path: Path, text: bytes) -> None:
    with fresh_folder(tmp_path) as folder:
        (folder / "s.yaml").write_bytes(text)
        run_case(folder, ["search", "--space", "s.yaml", "--check"])


OPTION_VALUES = st.one_of(
    TEXT, SMALL_INTS.map(str), st.sampled_from([str(v) for v in HUGE] + ["inf", "-inf", "0.5"])
)
SEARCH_OPTIONS = [
    "--n-trials",
    "--n-jobs",
    "--sampler",
    "--objective",
    "--pruner",
    "--max-gflops",
    "--max-params",
    "--dataset",
    "--img-size",
    "--epochs",
    "--max-steps",
    "--batch-size",
    "--lr",
    "--seed",
    "--threads",
    "--study",
    "--device",
    "--space",
    "--storage",
]


@budget(60)
@given(
    options=st.lists(st.tuples(st.sampled_from(SEARCH_OPTIONS), OPTION_VALUES), min_size=1, max_size=3),
    space=st.sampled_from(sorted(SHIPPED)),
)
def test_search_check_takes_any_option_value(
    tmp_path: Path, options: list[tuple[str, str]], space: str
) -> None:
    with fresh_folder(tmp_path) as folder:
        argv = ["search", "--space", space, "--check"]
        for name, value in options:
            argv += [name, value]
        run_case(folder, argv)


TINY_RUN = ["--quiet", "--n-trials", "1", "--max-steps", "1", "--epochs", "1", "--sampler", "random"]


@budget(4)
@given(text=mutated_space("tiny.yaml", huge=False))
def test_search_runs_a_mutated_tiny_space(tmp_path: Path, text: bytes) -> None:
    """A real search: refused before any study record, or run to the end."""
    with fresh_folder(tmp_path) as folder:
        (folder / "s.yaml").write_bytes(text)
        ran = run_case(folder, ["search", "--space", "s.yaml", *TINY_RUN, "--study", "fz"])
        assert (folder / "results/fz/journal.log").is_file() == (ran.code == 0)


# ---------------------------------------------------------------------------------------
# the other commands

TINY_MODEL = {
    "family": "hierarchical",
    "stages": [{"dim": 8, "depth": 1, "patch_size": 2, "mixer": {"kind": "axial_shift"}}],
}


@pytest.fixture(scope="module")
def model_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from affinity.models import resolve_model_config
    from affinity.models.config import ModelCfg, apply_overrides, save_model_config

    path = tmp_path_factory.mktemp("model") / "tiny.yaml"
    cfg = apply_overrides(
        resolve_model_config("as_mlp_t"), dims=(8, 8, 8, 8), depths=(1, 1, 1, 1), patch_sizes=(2, 2, 2, 2)
    )
    assert isinstance(cfg, ModelCfg)
    return save_model_config(cfg, path)


SIDES = st.sampled_from(["-1", "0", "1", "3", "8", "16", "17", "x", "1e9", "99999999999999999999"])


@budget(12)
@given(
    model=st.one_of(st.sampled_from(["TINY", "as_mlp_t", "as_mlp_tt", "", "no/such.yaml", "x.pth"]), TEXT),
    img=SIDES,
    chans=st.sampled_from(["-1", "0", "1", "3", "a"]),
    classes=st.sampled_from(["-1", "0", "1", "10"]),
    batch=st.sampled_from(["-1", "0", "1", "2"]),
    fmt=st.sampled_from(["table", "json", "csv", "xml"]),
)
def test_profile_takes_any_value(
    tmp_path: Path, model_yaml: Path, model: str, img: str, chans: str, classes: str, batch: str, fmt: str
) -> None:
    target = str(model_yaml) if model == "TINY" else model
    argv = ["profile", target, "--img-size", img, "--in-chans", chans, "--num-classes", classes]
    with fresh_folder(tmp_path) as folder:
        run_case(folder, [*argv, "--batch-size", batch, "--format", fmt, "--no-timing"])


@budget(6)
@given(
    dataset=st.one_of(
        st.sampled_from(
            ["synthetic:classes=2,n=32", "synthetic:n=-1", "synthetic:k=v", "npz:nope.npz", "cifar10:", "x"]
        ),
        TEXT,
    ),
    img=SIDES,
    lr=st.sampled_from(["0.01", "-1", "0", "nan", "inf", "x"]),
    seed=st.sampled_from(["0", "-1", "1e3", str(2**64)]),
    threads=st.sampled_from(["1", "0", "-2"]),
    budget_yaml=st.one_of(
        st.just("budget: {max_steps: 1, epochs: 1}\n"),
        mutated_space("tiny.yaml", huge=False).map(lambda b: b.decode("utf-8", "replace")),
    ),
)
def test_train_takes_any_value(
    tmp_path: Path,
    model_yaml: Path,
    dataset: str,
    img: str,
    lr: str,
    seed: str,
    threads: str,
    budget_yaml: str,
) -> None:
    with fresh_folder(tmp_path) as folder:
        (folder / "run.yaml").write_text(budget_yaml, encoding="utf-8")
        argv = ["train", str(model_yaml), "--dataset", dataset, "--img-size", img, "--lr", lr, "--seed", seed]
        argv += ["--threads", threads, "--epochs", "1", "--config", "run.yaml", "--out", "o", "--quiet"]
        argv += ["--device", "cpu"]
        run_case(folder, argv)


def _compare_spec() -> st.SearchStrategy[str]:
    from affinity.ops import AFFINITIES

    names = st.one_of(st.sampled_from(sorted(AFFINITIES.names())), TEXT)
    pair = st.tuples(
        st.one_of(st.sampled_from(["shift_size", "dilation", "padding", "window", "heads"]), TEXT),
        OPTION_VALUES,
    )
    return st.builds(
        lambda name, pairs: ":".join([name, *(f"{k}={v}" for k, v in pairs)]),
        names,
        st.lists(pair, max_size=2),
    )


@budget(15)
@given(
    specs=st.lists(_compare_spec(), min_size=1, max_size=3),
    grid=st.sampled_from(["-1", "0", "3", "5", "x"]),
    query=st.one_of(st.none(), st.sampled_from(["0,0", "2,2", "9,9", "-1,0", "a,b", "1", ""])),
)
def test_show_compare_takes_any_spec(tmp_path: Path, specs: list[str], grid: str, query: str | None) -> None:
    argv = ["show", "--compare", ",".join(specs), "--grid", grid, "--file", "c.png"]
    with fresh_folder(tmp_path) as folder:
        run_case(folder, argv + (["--query", query] if query is not None else []))


@pytest.fixture(scope="module")
def study_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding results/toy, a synthetic two-objective study."""
    from tests.report.test_study_report import make_study

    root = tmp_path_factory.mktemp("study")
    old = Path.cwd()
    os.chdir(root)
    try:
        make_study(n_trials=6)
    finally:
        os.chdir(old)
    return root


@budget(25)
@given(
    study=st.one_of(st.just("toy"), TEXT),
    top=st.one_of(st.none(), st.sampled_from(["-1", "0", "1", "100", "x"])),
    sort=st.one_of(st.none(), st.sampled_from(["val_acc", "gflops", "number", "nope", ""]), TEXT),
    fmt=st.sampled_from(["table", "json", "csv", "html"]),
)
def test_leaderboard_takes_any_value(
    study_root: Path, monkeypatch: pytest.MonkeyPatch, study: str, top: str | None, sort: str | None, fmt: str
) -> None:
    monkeypatch.chdir(study_root)
    argv = ["leaderboard", study, "--format", fmt]
    argv += ["--top", top] if top is not None else []
    argv += ["--sort", sort] if sort is not None else []
    run_case(study_root, argv)


@budget(4)
@given(study=st.one_of(st.just("toy"), TEXT), out=st.sampled_from(["r", "results/toy", "r/ü", "journal/x"]))
def test_report_takes_any_value(
    study_root: Path, monkeypatch: pytest.MonkeyPatch, study: str, out: str
) -> None:
    monkeypatch.chdir(study_root)
    run_case(study_root, ["report", study, "--out", out, "--quiet"])


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--space", "tiny.yaml", "--n-trials", "x"],
        ["search", "--space", "no_such.yaml", "--check"],
        ["profile", "as_mlp_t", "--img-size", "7", "--no-timing"],
        ["show", "--compare", "axial_shift:dilaton=2"],
    ],
)
def test_subprocess_is_one_line_and_exit_2(tmp_path: Path, argv: list[str]) -> None:
    """The installed entry point as a shell runs it: one line on stderr, exit code 2."""
    done = subprocess.run(
        [sys.executable, "-m", "affinity.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("affinity"), done.stderr
    assert not _files(tmp_path)  # an output folder checked before the refusal may stay, empty


def _tiny_model_doc() -> dict[str, Any]:
    import json

    from affinity.models import resolve_model_config
    from affinity.models.config import apply_overrides

    cfg = apply_overrides(
        resolve_model_config("as_mlp_t"), dims=(8, 8, 8, 8), depths=(1, 1, 1, 1), patch_sizes=(2, 2, 2, 2)
    )
    return {"model": json.loads(json.dumps(cfg.to_dict()))}


def _ratio(value: float) -> str:
    doc = _tiny_model_doc()
    doc["model"]["stages"][0]["channel_mlp_ratio"] = value
    return yaml.safe_dump(doc)


#: found by the fuzz and by hand on the way: each was a traceback
FOUND = [
    ("deep", "[" * 3000 + "]" * 3000, "nested too deeply"),
    ("cycle", "model: &m\n  family: hierarchical\n  stages: [*m]\n", "contains itself"),
    ("ratio", _ratio(1e300), "channel_mlp_ratio=1e+300 is not allowed"),
    ("nan", _ratio(float("nan")), "channel_mlp_ratio=nan is not allowed"),
]


@pytest.mark.parametrize(("case", "text", "needle"), FOUND, ids=[c[0] for c in FOUND])
@pytest.mark.parametrize("command", ["profile", "train", "show", "space"])
def test_found_documents_are_one_line(
    tmp_path: Path, case: str, text: str, needle: str, command: str
) -> None:
    (tmp_path / "f.yaml").write_text(text, encoding="utf-8")
    if command == "space":
        if case in ("ratio", "nan"):
            pytest.skip("a model config, not a space")
        argv = ["search", "--space", "f.yaml", "--check"]
    elif command == "train":
        argv = ["train", "f.yaml", "--dataset", "synthetic:classes=2,n=32", "--epochs", "1", "--quiet"]
    else:
        argv = [command, "f.yaml"] + (["--no-timing"] if command == "profile" else [])
    ran = run_case(tmp_path, argv)
    assert ran.code == 2 and needle in ran.stderr, ran


def test_a_model_no_memory_holds_is_one_line(tmp_path: Path) -> None:
    """A 25.6 GB channel MLP under a 6 GB address-space limit: the allocator's error, one line."""
    import resource

    (tmp_path / "big.yaml").write_text(_ratio(1e8), encoding="utf-8")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    done = subprocess.run(
        [sys.executable, "-m", "affinity.cli", "profile", "big.yaml", "--no-timing"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("affinity: error: out of memory (") and len(done.stderr.splitlines()) == 1


def test_an_int_range_of_a_trillion_values_is_never_listed(tmp_path: Path) -> None:
    """Found by the long profile: {int: [1, 10**12]} made --check list it (MemoryError)."""
    (tmp_path / "s.yaml").write_text(
        "model:\n  dims: [8]\n  depths: [1]\n"
        "  mixer: {kind: axial_shift, dilation: {int: [1, 1000000000000]}}\n",
        encoding="utf-8",
    )
    ran = run_case(tmp_path, ["search", "--space", "s.yaml", "--check"])
    assert ran.code == 0 and "model.mixer.dilation: continuous" in ran.stdout
    ran = run_case(tmp_path, ["search", "--space", "s.yaml", "--check", "--sampler", "grid"])
    assert ran.code == 2 and "a range of over 100000 values" in ran.stderr
