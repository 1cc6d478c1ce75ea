"""`show` and `convert`: a case read by a person, and moved between its encodings."""

import json

from vsock_fuzz.case.binary import encode
from vsock_fuzz.case.value import Region
from vsock_fuzz.case.wire import F_INDIRECT, F_NEXT, F_WRITE
from vsock_fuzz.cli import main
from vsock_fuzz.case.corpus import read_case, write_case, write_finding
from vsock_fuzz.case.wire import Header
from vsock_fuzz.case.layout import Buf, Layout, assemble, linux_tx
from vsock_fuzz.oracles import evaluate
from vsock_fuzz.cli.render import render
from vsock_fuzz.targets import open_target


def test_render_shows_regions_walk_header_bytes_and_both_profiles():
    text = render(assemble(linux_tx("5.x", 5, indirect=True, header=Header(src_port=4242))))
    assert "case: tx queue, max_data_size 65536" in text
    assert "region 0: [0x0, 0x100000)" in text
    assert "flags INDIRECT" in text and "-> indirect table @0x2000, 2 entries" in text
    assert "      [1] @0x2010: addr 0x2050 len 0x5 flags - next 2" in text  # table entries indented
    assert "src_port 4242" in text and "len 5" in text
    assert "buffer 1: [0x2050, +0x5) device-readable, region 0" in text
    assert "  > 0x000000002050: " in text  # the buffer's bytes marked
    assert "  spec: ok len=5" in text and "  rust-vmm: ok len=5" in text


def test_render_names_a_loop_once_and_the_error():
    text = render(assemble(Layout("tx", (Buf(44, next=1), Buf(5, F_NEXT, next=0)), header=Header(len=5))))
    assert "[0] @0x0 again: a loop" in text
    assert "stops: ChainTooLong" in text
    assert text.count("buffer ") == 2  # each distinct buffer dumped once
    assert "spec: rejected ChainTooLong (chain)" in text


def test_render_marks_unmapped_bytes_and_region_crossing():
    regions = (Region(0, 0x10000),)
    text = render(assemble(Layout("tx", (Buf(49, addr=0x10000 - 20),), header=Header(len=5), regions=regions)))
    assert "NOT all inside guest memory" in text
    assert ".. .. .." in text
    assert "spec: rejected InvalidMemoryAccess" in text


def test_render_of_a_nested_indirect_table():
    inner = Buf(16, F_INDIRECT, table=(Buf(49),))
    text = render(assemble(Layout("tx", (Buf(16, F_INDIRECT, table=(inner,)),), header=Header(len=5))))
    assert "stops: NestedIndirect" in text


def test_render_of_a_finding_leads_with_the_oracle(tmp_path):
    target = open_target("reference:rust-vmm")
    case = assemble(linux_tx("6.2", 5))._replace(regions=(Region(0, 0x2010), Region(0x2010, 0x10000)))
    _, findings = evaluate(target, case)
    assert findings
    stem, _ = write_finding(str(tmp_path), findings[0], "reference:rust-vmm")
    entry = read_case(stem + ".finding.json")
    text = render(entry.case, entry.finding)
    assert text.startswith(f"finding: {findings[0].oracle} ({findings[0].severity})")
    assert "target answered: rejected FragmentedMemory" in text
    assert "reproduce: vsock-fuzz replay --target reference:rust-vmm" in text


def test_show_command(tmp_path, capsys):
    path = str(tmp_path / "case.bin")
    write_case(path, assemble(linux_tx("6.2", 5)))
    assert main(["show", path]) == 0
    assert "walk from head 0" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["show", str(bad), path]) == 2
    out = capsys.readouterr()
    assert f"{bad}: truncated JSON" in out.err and f"== {path} (binary)" in out.out


def test_convert_round_trips_between_encodings(tmp_path, capsys):
    case = assemble(linux_tx("6.17", 40000, indirect=True))
    src = str(tmp_path / "a.bin")
    write_case(src, case)
    assert main(["convert", src, str(tmp_path / "b.json")]) == 0
    obj = json.loads((tmp_path / "b.json").read_text())
    assert obj["version"] == 1 and obj["queue"] == "tx"
    assert main(["convert", str(tmp_path / "b.json"), str(tmp_path / "c.bin")]) == 0
    assert (tmp_path / "c.bin").read_bytes() == encode(case)
    assert main(["convert", src, str(tmp_path / "d.out"), "--to", "json"]) == 0
    assert read_case(str(tmp_path / "b.json")).case == case
    assert json.loads((tmp_path / "d.out").read_text()) == obj
    capsys.readouterr()
    assert main(["convert", src, "-", "--to", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == obj


def test_convert_names_an_unreadable_input(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.json"), str(tmp_path / "x.bin")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_render_of_refused_queues():
    text = render(assemble(Layout("tx", (Buf(49),), header=Header(len=5), size=0)))
    assert "queue: InvalidQueueSize" in text and "walk: none, a queue of size 0" in text
    assert "header: the chain has no buffer to hold it" in text
    text = render(assemble(Layout("rx", (Buf(4140, F_WRITE),), desc_table=8)))
    assert "queue: MisalignedRing" in text and "shown although the device refuses the queue" in text
    assert "[0] @0x8: addr 0x2000 len 0x102c flags WRITE next 1" in text
    assert "header: rx, the device writes it" in text
