"""The device a target wraps (model/device.py): reading its description, fitting cases to
it, and the answers its offer makes legal (packet.readings)."""

import pytest

from vsock_fuzz.case.layout import Buf, Layout, assemble, linux_tx
from vsock_fuzz.case.value import Region
from vsock_fuzz.case.wire import DESC_SIZE, F_INDIRECT, HEADER_SIZE, TYPE_SEQPACKET, Header
from vsock_fuzz.model.device import ASSUMED, INDIRECT_DESC, SEQPACKET, Device, DeviceError, parse_features
from vsock_fuzz.model.packet import parse, readings

FIRECRACKER = {"features": ["VIRTIO_F_VERSION_1", "VIRTIO_F_IN_ORDER"], "max_data_size": 65536,
               "max_queue_size": 256}


def indirect_case():
    table = (Buf(HEADER_SIZE), Buf(100))
    return assemble(Layout("tx", (Buf(2 * DESC_SIZE, F_INDIRECT, table=table),), header=Header(len=100)))


def test_a_description_is_read_with_its_limits_and_unmodelled_features_kept():
    d = Device.from_json({**FIRECRACKER, "features": FIRECRACKER["features"] + ["VIRTIO_F_EVENT_IDX"]}, "hello")
    assert not d.indirect and not d.seqpacket and d.offers("VIRTIO_F_VERSION_1")
    assert (d.max_data_size, d.max_queue_size, d.source) == (65536, 256, "hello")
    assert d.to_json()["not_modelled"] == ["VIRTIO_F_EVENT_IDX", "VIRTIO_F_IN_ORDER", "VIRTIO_F_VERSION_1"]
    assert d.described and not ASSUMED.described


def test_without_a_description_every_feature_is_offered():
    assert ASSUMED.indirect and ASSUMED.seqpacket and ASSUMED.max_queue_size == 32768
    assert Device.from_json({}, "hello").indirect  # no `features`: nothing said, nothing taken away


def test_linux_name_of_the_indirect_bit_is_the_same_feature():
    assert parse_features("VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_F_VERSION_1", "x") == {INDIRECT_DESC,
                                                                                       "VIRTIO_F_VERSION_1"}


@pytest.mark.parametrize("obj,field", [
    ([], "device"),
    ({"features": "VIRTIO_F_VERSION_1"}, "device.features"),
    ({"features": [1]}, "device.features"),
    ({"features": ["has space"]}, "device.features"),
    ({"features": ["VIRTIO_F_VERSION_1", "indirect"]}, "device.features"),  # not a spec name: a typo
    ({"max_data_size": 0}, "device.max_data_size"),
    ({"max_data_size": 1 << 32}, "device.max_data_size"),
    ({"max_queue_size": 65536}, "device.max_queue_size"),
    ({"max_regions": "4"}, "device.max_regions"),
    ({"max_region_size": True}, "device.max_region_size"),
    ({"max_data_sise": 4096}, "max_data_sise"),
])
def test_a_malformed_description_names_the_field(obj, field):
    with pytest.raises(DeviceError, match=field.replace(".", r"\.")):
        Device.from_json(obj, "hello")


def test_an_unknown_feature_name_is_an_error_listing_the_known_ones():
    with pytest.raises(DeviceError, match=r"'VENDOR_F_DGRAM' is not a feature name \(known: VIRTIO_F_INDIRECT_DESC, "):
        Device.from_json({"features": ["VENDOR_F_DGRAM"]}, "hello")
    with pytest.raises(DeviceError, match="VIRTIO_VSOCK_F_SEQPACKET"):
        parse_features("bogus", "--device-features")


def test_an_unknown_feature_name_on_the_command_line_is_a_usage_error(capsys):
    from vsock_fuzz.cli import main
    with pytest.raises(SystemExit) as e:
        main(["check", "--target", "reference", "--device-features", "VIRTIO_F_VERSION_1,indirect"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage:" in err
    assert "argument --device-features: 'indirect' is not a feature name (known: VIRTIO_F_INDIRECT_DESC," in err


def test_the_command_line_wins_and_the_source_says_so():
    d = Device.from_json(FIRECRACKER, "hello").override("command line", max_data_size=4096)
    assert d.max_data_size == 4096 and d.max_queue_size == 256 and d.source == "hello, command line"
    assert ASSUMED.override("command line") is ASSUMED


def test_fit_sends_the_fixed_max_data_size_and_only_mappable_memory():
    case = assemble(linux_tx("6.2", 100))._replace(max_data_size=4096)
    assert ASSUMED.fit(case) is case
    assert Device(max_data_size=65536).fit(case).max_data_size == 65536
    big = case._replace(regions=(Region(0, 1 << 20), Region(1 << 30, 1 << 40), Region(1 << 41, 4096)))
    fitted = Device(max_region_size=1 << 20, max_regions=2).fit(big)
    assert fitted.regions == (Region(0, 1 << 20), Region(1 << 30, 1 << 20))
    assert all(any(r.gpa <= w.gpa and w.gpa + len(w.data) <= r.end for r in fitted.regions) for w in fitted.writes)
    assert Device(max_region_size=1 << 20, max_regions=2).fit(fitted) == fitted  # fitting twice changes nothing


def test_an_unoffered_indirect_descriptor_may_be_followed_ignored_or_refused():
    case = indirect_case()
    assert len(readings(case)) == 1  # every feature offered: the model's answer only
    followed, plain, refused = readings(case, device=Device(features=frozenset()))
    assert followed.answer == parse(case) and followed.answer.ok
    # Read as a plain 32-byte buffer it holds no 44-byte header.
    assert not plain.answer.ok and plain.walked.chain[0][0].flags & F_INDIRECT
    assert refused.answer.error == "IndirectNotOffered" and "VIRTIO_F_INDIRECT_DESC" in refused.why


def test_a_chain_without_indirect_has_one_reading_on_any_device():
    case = assemble(linux_tx("5.x", 100))
    assert len(readings(case, device=Device(features=frozenset()))) == 1


def test_an_unoffered_seqpacket_packet_may_be_refused():
    case = assemble(linux_tx("6.2", 10, header=Header(len=10, type=TYPE_SEQPACKET)))
    assert [r.answer.ok for r in readings(case, device=Device(features=frozenset({INDIRECT_DESC})))] == [True, False]
    assert len(readings(case, device=Device(features=frozenset({INDIRECT_DESC, SEQPACKET})))) == 1


def test_a_queue_above_the_device_maximum_is_refused():
    case = assemble(linux_tx("6.2", 10))._replace()
    big = assemble(Layout("tx", (Buf(HEADER_SIZE + 10),), header=Header(len=10), size=512))
    assert parse(case, device=Device(max_queue_size=256)).ok
    answer = parse(big, device=Device(max_queue_size=256))
    assert (answer.error, answer.error_class) == ("QueueSizeAboveMaximum", "queue")
    assert parse(big).ok
