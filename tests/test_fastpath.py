"""The frames-v1 transport (docs/protocol-extensions.md): negotiated in hello,
never assumed; both paths give the same answers; v1-only and strict v1
targets still work; a broken frame is a crash on the case in flight."""

import struct
import sys
import textwrap

import pytest

from native import c_target
from test_c_target import comparable, edge_cases, linux_cases, random_cases
from vsock_fuzz.model.answer import Answer
from vsock_fuzz.targets.frames import FrameError, decode_answer, encode_answer, encode_request
from vsock_fuzz.case.wire import Header
from vsock_fuzz.model.packet import parse
from vsock_fuzz.targets import CommandTarget, TargetError

SERVE = [sys.executable, "-m", "vsock_fuzz", "serve"]


def script(tmp_path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


@pytest.mark.parametrize("target", ["c", "serve"])
def test_both_transports_give_the_models_answers(target):
    argv = [c_target()] if target == "c" else SERVE
    cases = linux_cases() + edge_cases() + random_cases(600, seed=7)
    model = [comparable(parse(c)) for c in cases]
    for modes, mode in (((), "v1"), (("frames-v1",), "frames-v1")):
        t = CommandTarget(argv, modes=modes)
        answers = t.parse_many(cases)
        assert t.mode == mode
        assert [comparable(a) for a in answers] == model
        # one case at a time too (no pipelining)
        assert [comparable(t.parse(c)) for c in cases[:40]] == model[:40]
        t.close()


def test_a_v1_only_target_stays_on_v1(tmp_path):
    # serve with no modes: a v1 target that ignores the "modes" key it does not know
    t = CommandTarget([sys.executable, "-c", "from vsock_fuzz.targets.serve import serve; serve(modes=())"])
    cases = linux_cases()
    assert [comparable(a) for a in t.parse_many(cases)] == [comparable(parse(c)) for c in cases]
    assert t.mode == "v1"
    t.close()


def test_a_strict_v1_target_refusing_unknown_keys_gets_a_plain_hello(tmp_path):
    argv = script(tmp_path, "strict.py", """
        import json, sys
        for line in sys.stdin:
            req = json.loads(line)
            if set(req) - {"id", "op", "protocol", "queue", "max_data_size", "memory", "writes", "ring"}:
                out = {"ok": False, "error": "BadRequest", "detail": "unknown key"}
            elif req["op"] == "hello":
                out = {"ok": True, "protocol": 1, "name": "strict"}
            else:
                out = {"id": req["id"], "ok": False, "error": "Strict", "detail": ""}
            print(json.dumps(out), flush=True)
    """)
    t = CommandTarget(argv)
    assert t.parse(linux_cases()[0]).error == "Strict"
    assert (t.mode, t.name) == ("v1", "strict")
    t.close()


def test_a_mode_that_was_not_offered_is_refused(tmp_path):
    argv = script(tmp_path, "pushy.py", """
        import sys
        sys.stdin.readline()
        print('{"ok": true, "protocol": 1, "mode": "telepathy-v1"}', flush=True)
        sys.stdin.read()
    """)
    with pytest.raises(TargetError, match="mode 'telepathy-v1', which was not offered"):
        CommandTarget(argv).parse(linux_cases()[0])


def test_a_broken_frame_is_a_crash_on_the_case_in_flight(tmp_path):
    # Negotiates frames, answers the first case well, then announces a 1 GiB frame.
    argv = script(tmp_path, "liar.py", """
        import struct, sys
        from vsock_fuzz.model.answer import Answer
        from vsock_fuzz.targets.frames import encode_answer
        sys.stdin.readline()
        print('{"ok": true, "protocol": 1, "mode": "frames-v1"}', flush=True)
        inp, out = sys.stdin.buffer, sys.stdout.buffer
        n, rid = struct.unpack("<II", inp.read(8)); inp.read(n - 4)
        out.write(encode_answer(rid, Answer.reject("Fine", "chain"))); out.flush()
        n, rid = struct.unpack("<II", inp.read(8)); inp.read(n - 4)
        out.write(struct.pack("<I", 1 << 30)); out.flush()
        inp.read()
    """)
    t = CommandTarget(argv)
    first, second = t.parse_many(linux_cases()[:2])
    assert t.restarts == 0 and first.error == "Fine"
    assert second.error_class == "crash" and "announced a frame of 1073741824 bytes" in second.detail
    assert t.parse(linux_cases()[0]).error == "Fine"  # restarted, still on frames
    assert t.mode == "frames-v1"
    t.close()


def test_frame_codec_round_trips_and_rejects_malformed_frames():
    accepted = Answer(True, Header(len=5), ((4096, 44),), ((8192, 3), ((1 << 64) - 2, 2)))
    rx = Answer(True, None, ((0, 44),), ())
    rejected = Answer.reject("DescriptorChainTooShort", "chain", "détail")
    for a in (accepted, rx, rejected):
        frame = encode_answer(77, a)
        assert struct.unpack_from("<I", frame)[0] == len(frame) - 4
        assert decode_answer(frame[4:]) == (77, a)
    body = encode_answer(1, accepted)[4:]
    for broken, why in ((body[:-1], "malformed"), (body + b"\0", "left over"),
                        (body[:4] + b"\x07" + body[5:], "status byte 7"), (b"\1\0", "malformed")):
        with pytest.raises(FrameError, match=why):
            decode_answer(broken)
    assert encode_request(5, b"\1\2") == struct.pack("<II", 6, 5) + b"\1\2"


def test_serve_answers_a_frame_without_a_raw_case_with_bad_request():
    from vsock_fuzz.targets.serve import _answer_frame
    rid, answer = decode_answer(_answer_frame(struct.pack("<I", 3) + b"\1\0", parse)[4:])
    assert (rid, answer.error) == (3, "BadRequest")
