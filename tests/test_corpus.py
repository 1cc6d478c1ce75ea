"""Corpus files: reading every case form, one-line errors for damaged inputs,
atomic and concurrent finding writes, and the committed seed corpus."""

import json
import multiprocessing
import os

import pytest

from vsock_fuzz.case import corpus
from vsock_fuzz.engines import seeds
from vsock_fuzz.model.answer import Answer
from vsock_fuzz.case.binary import encode
from vsock_fuzz.case.corpus import CorpusError, iter_cases, list_files, read_case, write_finding
from vsock_fuzz.case.layout import assemble, linux_rx, linux_tx
from vsock_fuzz.oracles import Finding
from vsock_fuzz.model.packet import parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TX = assemble(linux_tx("5.x", 5))
RX = assemble(linux_rx("6.2"))


def finding(case=TX, oracle="safety.slice-in-region"):
    return Finding(oracle, oracle.split(".")[0], "critical", "test rule", "a message", case, parse(case))


def put(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return str(path)


def error_of(path) -> str:
    with pytest.raises(CorpusError) as e:
        read_case(str(path))
    msg = str(e.value)
    assert msg.startswith(str(path) + ": ") and "\n" not in msg
    return e.value.problem


# --- reading ----------------------------------------------------------------------

def test_binary_file_is_the_decoded_case(tmp_path):
    entry = read_case(put(tmp_path / "abc", encode(TX)))
    assert entry.case == TX and entry.kind == "binary"


def test_binary_version_byte_is_part_of_the_input(tmp_path):
    # Decoding is total: a mutated version byte reads as version 1, as the fuzzer ran it.
    data = encode(TX)
    assert read_case(put(tmp_path / "v7", bytes([7]) + data[1:])).case == TX


def test_content_hash_names_catch_truncated_and_corrupt_binary_files(tmp_path):
    data = encode(TX)
    sha = corpus.content_name(data)
    assert read_case(put(tmp_path / sha, data)).case == TX
    assert read_case(put(tmp_path / f"crash-{sha}", data)).case == TX
    assert "truncated or corrupt" in error_of(put(tmp_path / f"safety.crash-{sha}.bin", data[:-3]))
    flipped = data[:10] + bytes([data[10] ^ 1]) + data[11:]
    assert "truncated or corrupt" in error_of(put(tmp_path / f"crash-{sha}", flipped))
    # names that promise nothing about the content: decoded as they are
    assert read_case(put(tmp_path / f"minimized-from-{sha}", data[:-3])).kind == "binary"
    assert read_case(put(tmp_path / "my-case.bin", data[:-3])).kind == "binary"


def test_content_hash_names_catch_edited_json(tmp_path):
    stem, _ = write_finding(str(tmp_path), finding())
    obj = json.loads(open(stem + ".json").read())
    obj["max_data_size"] = 4
    assert "edited or corrupt" in error_of(put(stem + ".json", json.dumps(obj)))


def test_json_request_with_or_without_id_and_op(tmp_path):
    for extra in ({}, {"id": 9}, {"op": "parse"}, {"version": 1}):
        obj = {k: v for k, v in RX.to_request().items() if k != "op"} | extra
        assert read_case(put(tmp_path / "c.json", json.dumps(obj))).case == RX


def test_finding_file_gives_its_case(tmp_path):
    stem, new = write_finding(str(tmp_path), finding(RX))
    entry = read_case(stem + ".finding.json")
    assert new and entry.kind == "finding" and entry.case == RX
    assert entry.finding["oracle"] == "safety.slice-in-region"


def test_truncated_json_is_named(tmp_path):
    text = json.dumps(TX.to_request())
    assert error_of(put(tmp_path / "t.json", text[:40])).startswith("truncated JSON")


def test_corrupt_json_is_named(tmp_path):
    text = json.dumps(TX.to_request())
    assert error_of(put(tmp_path / "c.json", text.replace(":", "#", 3))).startswith("corrupt JSON")


def test_not_utf8_json(tmp_path):
    assert "not UTF-8" in error_of(put(tmp_path / "u.json", b"\xff\xfe{}"))


def test_invalid_case_gives_the_case_error(tmp_path):
    obj = TX.to_request() | {"queue": "event"}
    assert error_of(put(tmp_path / "q.json", json.dumps(obj))) == "not a valid case: queue must be \"tx\" or \"rx\", not 'event'"
    obj = TX.to_request() | {"writes": [{"gpa": 1 << 30, "hex": "00"}]}
    assert "does not lie inside memory" in error_of(put(tmp_path / "w.json", json.dumps(obj)))


def test_unknown_case_version(tmp_path):
    assert "unknown case version 2" in error_of(put(tmp_path / "v.json", json.dumps(TX.to_request() | {"version": 2})))
    fj = finding().to_json()
    fj["case"]["version"] = 3
    assert "unknown case version 3" in error_of(put(tmp_path / "f.finding.json", json.dumps(fj)))


def test_other_requests_are_not_cases(tmp_path):
    assert "not a parse request" in error_of(put(tmp_path / "h.json", '{"op": "hello", "protocol": 1}'))
    assert "JSON object" in error_of(put(tmp_path / "l.json", "[1, 2]"))


def test_a_report_is_not_a_case(tmp_path):
    from vsock_fuzz.cli import report
    rep = report.new("replay", None, spec="reference")
    assert "vsock-fuzz report" in error_of(put(tmp_path / "report.json", json.dumps(rep)))


def test_finding_without_a_case(tmp_path):
    assert "no \"case\"" in error_of(put(tmp_path / "x.finding.json", '{"oracle": "safety.crash"}'))


def test_missing_and_directory(tmp_path):
    assert "vanished" in error_of(tmp_path / "gone")
    os.mkdir(tmp_path / "d.json")
    assert error_of(tmp_path / "d.json") == "is a directory"


def test_unreadable_file(tmp_path, monkeypatch):
    path = put(tmp_path / "secret", encode(TX))
    if os.geteuid() != 0:
        os.chmod(path, 0)
    else:  # root reads anything: make open() refuse as the kernel would
        real_open = open
        monkeypatch.setattr("builtins.open", lambda p, *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                            if p == path else real_open(p, *a, **k))
    assert error_of(path) == "cannot read: Permission denied"


def test_oversized_file(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_FILE", 10)
    assert "larger than" in error_of(put(tmp_path / "big", bytes(11)))


# --- directories ------------------------------------------------------------------

def test_directory_is_walked_recursively_sorted_skipping_non_cases(tmp_path):
    (tmp_path / "b").mkdir()
    put(tmp_path / "b" / "2", encode(RX))
    put(tmp_path / "a.json", json.dumps(TX.to_request()))
    put(tmp_path / "c", encode(TX))
    put(tmp_path / "vsock.dict", 'x="\\x01"\n')
    put(tmp_path / ".c.tmp", b"half")
    put(tmp_path / "README.md", "notes")
    assert list(list_files([str(tmp_path)])) == [str(tmp_path / n) for n in ("a.json", "b/2", "c")]


def test_bad_files_stand_in_place_and_the_rest_still_reads(tmp_path):
    put(tmp_path / "1", encode(TX))
    put(tmp_path / "2.json", "{")
    put(tmp_path / "3", encode(RX))
    items = list(iter_cases([str(tmp_path), str(tmp_path / "nope")]))
    assert [type(i).__name__ for i in items] == ["Entry", "CorpusError", "Entry", "CorpusError"]
    assert items[2].case == RX and "no such file or directory" in str(items[3])


def test_unlistable_directory_is_named_and_the_rest_still_reads(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    put(tmp_path / "locked" / "x", encode(TX))
    put(tmp_path / "z", encode(RX))
    real = os.listdir

    def listdir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(os, "listdir", listdir)
    items = list(iter_cases([str(tmp_path)]))
    assert str(items[0]) == f"{tmp_path / 'locked'}: cannot list directory: Permission denied"
    assert items[1].case == RX


def test_symlink_loop_is_named_not_followed(tmp_path):
    (tmp_path / "d").mkdir()
    put(tmp_path / "d" / "x", encode(TX))
    os.symlink("..", tmp_path / "d" / "up")
    items = list(iter_cases([str(tmp_path)]))
    assert [type(i).__name__ for i in items] == ["CorpusError", "Entry"]  # d/up, then d/x
    assert str(items[0]) == f"{tmp_path / 'd' / 'up'}: directory already being read (symlink loop), skipped"


def test_file_vanishing_mid_replay(tmp_path):
    for n in "123":
        put(tmp_path / n, encode(TX))
    it = iter_cases([str(tmp_path)])
    first = next(it)
    os.unlink(tmp_path / "2")  # listed already, gone before it is read
    rest = list(it)
    assert first.case == TX
    assert isinstance(rest[0], CorpusError) and "vanished" in rest[0].problem
    assert rest[1].case == TX


# --- writing ----------------------------------------------------------------------

def test_write_finding_writes_three_files_once(tmp_path):
    f = finding()
    stem, new = write_finding(str(tmp_path), f, "py:some.module:parse")
    assert new and os.path.basename(stem) == f.file_stem()
    assert read_case(stem + ".bin").case == TX and read_case(stem + ".json").case == TX
    saved = json.loads(open(stem + ".finding.json").read())
    assert saved["target"] == "py:some.module:parse" and saved["oracle"] == f.oracle
    assert write_finding(str(tmp_path), f) == (stem, False)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(stem) + s for s in (".bin", ".json", ".finding.json"))


def test_failed_write_leaves_no_temporary_file(tmp_path):
    os.mkdir(tmp_path / "taken")  # os.replace onto a directory fails
    with pytest.raises(OSError):
        corpus.atomic_write(str(tmp_path / "taken"), b"data")
    assert os.listdir(tmp_path) == ["taken"]


def _writer(args):
    directory, n = args
    for i in range(n):
        case = assemble(linux_tx("6.2", i % 7))
        write_finding(directory, finding(case))
    return True


def test_concurrent_writers_share_one_directory(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert all(pool.map(_writer, [(str(tmp_path), 30)] * 4))
    names = os.listdir(tmp_path)
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
    assert len(names) == 3 * 7  # seven distinct cases, de-duplicated by name
    for item in iter_cases([str(tmp_path)]):
        assert not isinstance(item, CorpusError), item


# --- the committed seed corpus ------------------------------------------------------

def test_committed_seeds_are_what_the_generator_makes():
    for harness, items in seeds.seeds().items():
        have = set(os.listdir(os.path.join(ROOT, "corpus", harness)))
        missing = [corpus.content_name(d) for d in items if corpus.content_name(d) not in have]
        assert not missing, f"corpus/{harness} is stale: run python -m vsock_fuzz.engines.seeds corpus/"
    with open(os.path.join(ROOT, "corpus", "vsock.dict")) as f:
        assert f.read() == seeds.dictionary_text()


def test_seeds_hold_both_forms_and_every_family():
    layouts = seeds.driver_layouts() + seeds.packet_families() + seeds.chain_families()
    for _, lay in layouts:
        raw, *short = seeds.forms(lay)
        assert raw == encode(assemble(lay))
        assert short and len(short[0]) < len(raw)  # every seed layout has a structured form
    errors = {parse(assemble(lay)).error for _, lay in layouts}
    for name in ("ChainTooLong", "NestedIndirect", "IndirectWithNext", "InvalidIndirectTable", "InvalidQueueSize",
                 "MisalignedRing", "InvalidHeaderLen", "HeaderTooShort", "UnexpectedWriteOnlyDescriptor",
                 "UnexpectedReadOnlyDescriptor", "ChainTooLarge", "InvalidMemoryAccess", "DescriptorIndexOutOfRange"):
        assert name in errors


def test_dictionary_entries_are_valid_libfuzzer_lines():
    lines = [ln for ln in seeds.dictionary_text().splitlines() if ln and not ln.startswith("#")]
    for ln in lines:
        name, _, value = ln.partition("=")
        assert name.isidentifier() and value.startswith('"') and value.endswith('"')
    values = dict(seeds.dictionary())
    assert values["varint_0x2c"] == b"\x2c" and values["varint_0x1000"] == b"\x80\x20"
    assert values["varint_0xffffffff"] == b"\xff\xff\xff\xff\x0f"


def test_each_harness_gets_its_queue():
    queues = {h: {e.case.queue for e in iter_cases([os.path.join(ROOT, "corpus", h)])} for h in seeds.HARNESSES}
    assert queues == {"tx": {"tx"}, "rx": {"rx"}, "chain": {"tx", "rx"}, "target": {"tx", "rx"}}
