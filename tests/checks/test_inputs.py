"""The input boundary (issue #13): no file makes ``validate``, ``replay`` or ``show``
print a traceback, run away with time or memory, or exit 1 for anything but a real
property failure.  Bad input is exit 2 and one line naming the file and the line.

A regression test for each class of input that broke the old reader, then a fuzzer
that mutates valid traces (truncation, type swaps, huge numbers, deep nesting,
unicode edge cases, lone surrogates, broken value encodings) and runs the three
commands in this process; a slow variant runs thousands of examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distcheck.checks.cli.main import main
from distcheck.checks.conformance.wiring.paxos_log import log_acceptors
from distcheck.checks.inputs import DEFAULT_LIMITS, JsonReader, Limits, nesting_depth, printable
from distcheck.checks.search.explore import Explorer
from distcheck.checks.traces import render, trace
from distcheck.spec.codec import from_json, value_problem
from distcheck.spec.registry import REGISTRY
from distcheck.spec.values import Bag, FrozenMap

HEADER = {
    "format": "distcheck-trace",
    "version": 1,
    "spec": "twophase",
    "params": {"rms": 3},
    "variant": None,
    "source": "impl",
    "violation": None,
}


def lines_text(*lines: Any) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def explorer_trace() -> str:
    """A counterexample with states and messages (TwoPhase, commit_early)."""
    spec = REGISTRY["twophase"].make(variant="commit_early")
    v = Explorer(spec).run().violation
    assert v is not None
    tr = trace.from_behaviour(spec, v.trace, violation=trace.violation_of(v.name, v.statement, v.kind))
    return trace.dumps(tr)


def impl_trace() -> str:
    """An implementation's log: actions only, a transaction id on each step."""
    steps: list[dict[str, Any]] = [{"step": 0, "actor": None, "action": None}]
    for rm in ("r1", "r2", "r3"):
        steps.append({"step": len(steps), "actor": rm, "action": {"type": "RMPrepare", "rm": rm}, "txn": "t1"})
    for rm in ("r1", "r2", "r3"):
        steps.append({"step": len(steps), "actor": "tm", "action": {"type": "TMRcvPrepared", "rm": rm}, "txn": "t1"})
    steps.append({"step": len(steps), "actor": "tm", "action": {"type": "TMCommit"}, "txn": "t1"})
    return lines_text(HEADER, *steps)


def encodings_trace() -> str:
    """A trace whose states use every value encoding: a record, a map with string
    keys, a map with other keys, a bag, a list (shown, not replayed)."""

    def state(n: int) -> dict[str, Any]:
        return {
            "type": "S",
            "names": {"a": n},
            "pairs": {"map": [[["r1", 1], n], [["r2", 2], 0]]},
            "net": {"bag": [[{"type": "Msg", "n": n}, n + 1]]},
            "log": list(range(n)),
        }

    steps: list[dict[str, Any]] = [{"step": 0, "actor": None, "action": None, "state": state(0)}]
    for i in (1, 2):
        steps.append({"step": i, "actor": "x", "action": {"type": "Go"}, "state": state(i)})
    return lines_text({**HEADER, "source": "external"}, *steps)


BASES: dict[str, Callable[[], str]] = {"explorer": explorer_trace, "impl": impl_trace, "encodings": encodings_trace}
_BASE_TEXT: dict[str, str] = {}


def base(name: str) -> str:
    if name not in _BASE_TEXT:
        _BASE_TEXT[name] = BASES[name]()
    return _BASE_TEXT[name]


COMMANDS: list[list[str]] = [["show"], ["replay"], ["validate", "twophase"]]


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_well_behaved(code: int, out: str, err: str, path: Path) -> None:
    """The contract: exit 0, 1 or 2; never a traceback; bad input is one line on
    stderr that names the file."""
    assert "Traceback" not in out + err
    assert code in (0, 1, 2), (code, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("distcheck: error: "), err
        assert str(path) in err or "--split" in err or "not a behaviour" in err, err


def check_file(capsys: pytest.CaptureFixture[str], path: Path, *, split: bool = True) -> dict[str, tuple[int, str]]:
    """Run show, replay and validate (with and without --split txn) on ``path``."""
    out: dict[str, tuple[int, str]] = {}
    for command in COMMANDS:
        variants: list[list[str]] = [[]] + ([["--split", "txn"]] if split and command[0] == "validate" else [])
        for extra in variants:
            code, stdout, stderr = run(capsys, [*command, str(path), *extra])
            assert_well_behaved(code, stdout, stderr, path)
            out[" ".join(command + extra)] = (code, stderr)
    return out


def write(tmp_path: Path, text: str | bytes, name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def with_step(text: str, index: int, edit: Callable[[dict[str, Any]], Any]) -> str:
    """``text`` with line ``index`` (0: the header) edited as JSON."""
    lines = text.splitlines()
    data = json.loads(lines[index])
    edit(data)
    lines[index] = json.dumps(data)
    return "\n".join(lines) + "\n"


def all_exit_2(results: dict[str, tuple[int, str]], fragment: str) -> None:
    for command, (code, err) in results.items():
        assert code == 2, (command, code, err)
        assert fragment in err, (command, err)


# -------------------------------------------------------------- one test per class


def test_json_nested_a_thousand_deep_is_exit_2_naming_the_limit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deep = "[" * 1000 + "]" * 1000
    text = impl_trace().replace('"txn": "t1"}', f'"txn": "t1", "note": {deep}}}', 1)
    results = check_file(capsys, write(tmp_path, text), split=False)
    all_exit_2(results, f"nested 1,001 deep; at most {DEFAULT_LIMITS.depth}")
    assert all(":3: " in err for _, err in results.values())  # the line


def test_show_of_a_state_nested_within_the_limit_renders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 500 deep broke the old `show`; within the limit, every level renders.
    depth = DEFAULT_LIMITS.depth - 2
    nested: Any = "core"
    for _ in range(depth):
        nested = [nested]
    text = with_step(encodings_trace(), 2, lambda d: d["state"].__setitem__("log", nested))
    code, out, err = run(capsys, ["show", str(write(tmp_path, text))])
    assert code == 0, err
    assert "core" in out and out.count("[") >= depth


def test_an_integer_of_5000_digits_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = impl_trace().replace('"step": 2,', '"step": ' + "9" * 5000 + ",", 1)
    all_exit_2(check_file(capsys, write(tmp_path, text), split=False), "an integer of 5,000 digits")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"map": [[1, 2, 3]]}, "a map is written"),
        ({"map": [5]}, "a map is written"),
        ({"bag": [["m"]]}, "a bag is written"),
        ({"bag": [["m", 1.5]]}, "a bag's count is a positive integer, got 1.5"),
        ({"bag": [["m", 0]]}, "a bag's count is a positive integer, got 0"),
        ({"bag": [["m", True]]}, "a bag's count is a positive integer, got true"),
        ({"type": {"x": 1}}, 'a record\'s "type" names its class with a string'),
        ({"type": ["RMPrepare"]}, 'a record\'s "type" names its class with a string'),
    ],
)
def test_a_malformed_value_encoding_is_exit_2_naming_the_step(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: Any, fragment: str
) -> None:
    text = with_step(encodings_trace(), 3, lambda d: d["state"].__setitem__("net", value))
    results = check_file(capsys, write(tmp_path, text), split=False)
    all_exit_2(results, fragment)
    assert all(':4: step 2: "state"' in err for _, err in results.values())


def test_an_action_whose_type_is_an_object_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = with_step(impl_trace(), 3, lambda d: d["action"].__setitem__("type", {"a": 1}))
    all_exit_2(check_file(capsys, write(tmp_path, text)), '"action" must be an object with a string "type"')
    text = with_step(impl_trace(), 3, lambda d: d["action"].__setitem__("rm", {"type": {"a": 1}}))
    all_exit_2(check_file(capsys, write(tmp_path, text)), "names its class with a string")


def test_a_bag_count_of_a_billion_is_shown_without_expanding_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = with_step(encodings_trace(), 3, lambda d: d["state"].__setitem__("net", {"bag": [["m", 10**9]]}))
    code, out, err = run(capsys, ["show", str(write(tmp_path, text))])
    assert code == 0, err
    assert len(out) < 20_000
    changes = trace.diff({"b": {"bag": [["m", 1]]}}, {"b": {"bag": [["m", 10**9]]}})
    assert len(changes) == 1 and 0 < len(changes[0].added) <= 100


def test_codec_decodes_every_encoding_and_refuses_broken_ones() -> None:
    types: dict[str, type] = {}
    assert from_json({"map": [[["a", 1], 2]]}, types) == FrozenMap[Any, Any]({("a", 1): 2})
    assert from_json({"bag": [["m", 3]]}, types) == Bag({"m": 3})
    assert from_json({"r1": [1, 2]}, types) == FrozenMap[Any, Any]({"r1": (1, 2)})
    broken: Any
    for broken in ({"type": {"x": 1}}, {"map": [[{}]]}, {"bag": [["m", -1]]}, {"bag": [["m", 2.0]]}):
        assert value_problem(broken) is not None
        with pytest.raises(ValueError):
            from_json(broken, types)
    # A type name that is not a string never reaches the type table (it was `unhashable type: 'dict'`).
    with pytest.raises(ValueError, match="names its class with a string"):
        from_json({"type": {"a": 1}}, {"RMPrepare": int})


def test_a_lone_surrogate_is_printed_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = impl_trace().replace('"actor": "r2"', '"actor": "r\\udc802"', 1)
    text = text.replace('"txn": "t1"}', '"txn": "t1", "action_text": "go\\ud800\\u001b[2J"}', 1)
    for command in (["show"], ["replay"], ["validate", "twophase"]):
        code, out, err = run(capsys, [*command, str(write(tmp_path, text))])
        assert_well_behaved(code, out, err, tmp_path / "t.jsonl")
    code, out, err = run(capsys, ["show", str(write(tmp_path, text))])
    assert "\x1b[2J" not in out


def test_output_survives_a_terminal_that_cannot_encode(tmp_path: Path) -> None:
    """One subprocess: the console script, ASCII output, a lone surrogate and an
    escape sequence in the file; then a malformed file."""
    text = impl_trace().replace('"actor": "r2"', '"actor": "r\\udc80\\u001b2"', 1)
    path = write(tmp_path, text)
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    command = [sys.executable, "-m", "distcheck.checks.cli"]
    shown = subprocess.run([*command, "show", str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode in (0, 2) and "Traceback" not in shown.stderr, shown.stderr
    assert "\x1b" not in shown.stdout
    path.write_text(text.replace('"step": 3', '"step": [[[[' + "1" * 30 + "]]]]"))
    bad = subprocess.run([*command, "replay", str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and f"{path}:5: " in bad.stderr and "30 digits" in bad.stderr, bad.stderr


def test_an_acceptor_named_superscript_two_sorts_instead_of_crashing() -> None:
    def event(acceptor: str) -> dict[str, Any]:
        action = {"type": "Phase1b", "acceptor": acceptor, "bal": 0}
        return {"step": 1, "actor": acceptor, "action": action, "from_slot": 0}

    assert log_acceptors([event("²"), event("r1")], 3)[:2] == ["r1", "²"]


def test_a_very_long_string_is_refused_and_a_long_one_shown_cut(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    huge = "x" * (DEFAULT_LIMITS.string_chars + 1)
    text = with_step(encodings_trace(), 2, lambda d: d.__setitem__("action_text", huge))
    all_exit_2(check_file(capsys, write(tmp_path, text), split=False), "a string of 1,048,577 characters")
    long = "y" * 300_000
    text = with_step(encodings_trace(), 2, lambda d: d["state"].__setitem__("names", {"a": long}))
    code, out, err = run(capsys, ["show", str(write(tmp_path, text))])
    assert code == 0, err
    assert "…(+299,800" in out
    assert max(len(line) for line in out.splitlines()) <= 120


def test_message_arrows_start_at_the_latest_sender_across_many_steps() -> None:
    steps = [trace.TraceStep(0, None, None, None)]
    for i in range(1, 20_001):
        if i % 2:
            steps.append(trace.TraceStep(i, f"n{i % 7}", {"type": "Send"}, sent=({"type": "M", "k": i % 5},)))
        else:
            steps.append(trace.TraceStep(i, "r", {"type": "Recv"}, received=({"type": "M", "k": (i - 1) % 5},)))
    arrows = render.arrows(trace.Trace(trace.TraceHeader("x"), tuple(steps)))
    assert len(arrows) == 10_000
    assert all(a.sent_at == a.received_at - 1 for a in arrows)
    assert arrows[-1].sender == f"n{19_999 % 7}"


def test_limits_are_each_reported_with_what_is_allowed(tmp_path: Path) -> None:
    small = Limits(file_bytes=10_000, lines=5, line_chars=400, depth=3, int_digits=3, string_chars=10)
    reader = JsonReader(small)
    cases = {
        "[[[[1]]]]": "nested 4 deep; at most 3",
        "1234": "an integer of 4 digits; integers have at most 3 digits",
        '"' + "s" * 11 + '"' + " " * 2: "a string of 11 characters",
        "NaN": "NaN is not JSON",
        "[1e999]": "out of range",
        "{" + " " * 500 + "}": "a line of 502 characters",
    }
    for text, fragment in cases.items():
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
            reader.parse(text)
    assert reader.parse('["[[[[", 123]') == ["[[[[", 123]  # brackets in strings are not nesting
    assert nesting_depth('[{"a": "]]]"}]') == 2
    path = write(tmp_path, impl_trace())
    with pytest.raises(trace.TraceFormatError, match="more than 5 lines"):
        trace.read(path, Limits(lines=5))
    path.write_bytes(b"x" * 10_001)
    with pytest.raises(trace.TraceFormatError, match="a file of 10,001 bytes; at most 10,000"):
        trace.read(path, Limits(file_bytes=10_000))
    path.write_bytes(b"[" + b" " * 1000 + b"]\n")
    with pytest.raises(trace.TraceFormatError, match=":1: a line of 1,002 characters; lines have at most 400"):
        trace.read(path, small)
    path.write_bytes(json.dumps(HEADER).encode() + b"\n\xff\xfe\n")
    with pytest.raises(trace.TraceFormatError, match=r":2: not UTF-8"):
        trace.read(path)


def test_a_line_separator_inside_a_string_is_not_a_line_end(tmp_path: Path) -> None:
    text = impl_trace().replace('"txn": "t1"}', '"txn": "t1", "note": "a\u2028b\u0085c"}', 1)
    assert len(trace.read(write(tmp_path, text)).steps) == 8


def test_printable_escapes_controls_bidi_and_surrogates() -> None:
    assert printable("a\x1b[31mb\u202ec\ud800\n") == "a\\x1b[31mb\\u202ec\\ud800\\x0a"
    assert printable("a\nb", keep_newlines=True) == "a\nb"


def test_replay_names_the_key_when_a_trace_holds_several_instances(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = with_step(impl_trace(), 4, lambda d: d.__setitem__("txn", "t2"))
    code, _, err = run(capsys, ["replay", str(write(tmp_path, text))])
    assert code == 2 and "several instances of twophase" in err and "--split txn" in err


def test_replay_accepts_what_validate_accepts_for_an_implementation_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The lock service logs its clients' steps as the server; the spec's events name
    no actor for them (``Lock.observe``), so replay does not insist on one."""
    from distcheck.checks.conformance.simulate import SimOptions, simulate
    from distcheck.checks.conformance.wiring import WIRINGS
    from distcheck.checks.params import build_spec

    wiring = WIRINGS["lock"]
    _, params, spec = build_spec("lock", list(wiring.default_params))
    outcome = simulate(spec, wiring, params, SimOptions(seed=3, steps=400))
    path = write(tmp_path, outcome.run.trace.text())
    assert '"actor": "server"' in path.read_text()
    assert run(capsys, ["validate", "lock", str(path)])[0] == 0
    code, out, err = run(capsys, ["replay", str(path)])
    assert code == 0, err
    assert "a clean behaviour of lock" in out


# ------------------------------------------------------------------------ the fuzzer

NASTY: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    10**19,
    "",
    "\ud800",
    "\udfff x",
    "\x00\x1b[2J\u202e",
    "²",
    "😀" * 3,
    [],
    {},
    [[[[[]]]]],
    {"type": {"t": 1}},
    {"type": None},
    {"map": [[1]]},
    {"map": [[[], 1], [[], 2]]},
    {"map": "x"},
    {"bag": [["m", 10**18]]},
    {"bag": [["m", 1.0]]},
    {"bag": [[{"type": "Commit"}, 2]]},
    {"type": "Commit"},
    {"type": "RMPrepare", "rm": ["r1"]},
    {"type": "RMPrepare", "rm": {"map": [[1, 2]]}},
    {"type": "TMRcvPrepared", "rm": "r9"},
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    value[path[0]] = _set(value[path[0]], path[1:], new)
    return value


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    text = base(draw(st.sampled_from(sorted(BASES))))
    lines = text.splitlines()
    kind = draw(
        st.sampled_from(["value", "value", "value", "truncate", "lines", "bytes", "deep", "number", "swap_lines"])
    )
    if kind == "value":
        index = draw(st.integers(0, len(lines) - 1))
        data = json.loads(lines[index])
        path = draw(st.sampled_from(_paths(data)))
        new = draw(st.sampled_from(NASTY) | st.text(max_size=8) | st.integers() | st.floats(allow_nan=False))
        lines[index] = json.dumps(_set(data, path, new), ensure_ascii=draw(st.booleans()))
        raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    elif kind == "truncate":
        raw = text.encode()[: draw(st.integers(0, len(text.encode())))]
    elif kind == "lines":
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "blank", "garbage"]))
        if action == "drop":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "blank":
            lines.insert(index, "")
        else:
            lines.insert(index, draw(st.text(max_size=20)))
        raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    elif kind == "bytes":
        edited = bytearray(text.encode())
        at = draw(st.integers(0, len(edited)))
        edited[at:at] = draw(st.binary(min_size=1, max_size=6))
        raw = bytes(edited)
    elif kind == "deep":
        depth = draw(st.sampled_from([99, 100, 101, 500, 1000, 5000]))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        index = draw(st.integers(1, len(lines) - 1))
        lines[index] = lines[index][:-1] + ', "deep": ' + opener * depth + "1" + closer * depth + "}"
        raw = "\n".join(lines).encode()
    elif kind == "number":
        digits = draw(st.sampled_from([19, 20, 21, 25, 4300, 5000]))
        index = draw(st.integers(1, len(lines) - 1))
        lines[index] = lines[index].replace('"step": ', '"step": ' + "9" * digits + " + ", 1)
        lines[index] = lines[index][:-1] + ', "n": ' + draw(st.sampled_from(["-", ""])) + "7" * digits + "}"
        raw = "\n".join(lines).encode()
    else:
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        raw = "\n".join(lines).encode()
    return raw + draw(st.sampled_from([b"", b"\n", b"\r\n", b"\n\n"]))


def _fuzz(capsys: pytest.CaptureFixture[str], tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path, raw, "fuzz.jsonl")
    check_file(capsys, path)


_FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(_FUZZ, max_examples=200)
@given(raw=mutated())
def test_no_mutated_trace_makes_a_command_misbehave(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, raw: bytes
) -> None:
    _fuzz(capsys, tmp_path, raw)


@pytest.mark.slow
@settings(_FUZZ, max_examples=3000)
@given(raw=mutated())
def test_no_mutated_trace_makes_a_command_misbehave_thorough(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, raw: bytes
) -> None:
    _fuzz(capsys, tmp_path, raw)
