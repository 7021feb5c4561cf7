"""Parsing client messages into commands or error codes (no I/O)."""

import json

import pytest

from hub import protocol
from hub.broker import members_array
from hub.protocol import Join, Leave, ProtocolError, Publish, parse
from tests.hubkit import decode_frames


def test_parses_the_three_commands() -> None:
    assert parse('{"type":"join","room":"a-b_c.d:1"}') == Join("a-b_c.d:1")
    assert parse('{"type":"join","room":"r","since":3,"epoch":"e"}') == Join("r", 3, "e")
    assert parse('{"type":"leave","room":"r"}') == Leave("r")
    assert parse('{"type":"publish","room":"r","data":null,"id":"x"}') == Publish("r", None, "x")
    assert parse('{"type":"publish","room":"r","data":1,"ephemeral":true}').ephemeral


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", protocol.BAD_JSON),
        ("{", protocol.BAD_JSON),
        ('{"type":"publish","room":"r","data":NaN}', protocol.BAD_JSON),
        ("[1,2]", protocol.BAD_REQUEST),
        ('"join"', protocol.BAD_REQUEST),
        ('{"room":"r"}', protocol.BAD_REQUEST),
        ('{"type":5}', protocol.BAD_REQUEST),
        ('{"type":"dance"}', protocol.UNKNOWN_TYPE),
        ('{"type":"join"}', protocol.BAD_REQUEST),
        ('{"type":"join","room":""}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"' + "x" * 65 + '"}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"has space"}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"caf\\u00e9"}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"r\\n"}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"r","since":"3"}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"r","since":-1}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"r","since":true}', protocol.BAD_REQUEST),
        ('{"type":"join","room":"r","since":1,"epoch":7}', protocol.BAD_REQUEST),
        ('{"type":"publish","room":"r"}', protocol.BAD_REQUEST),
        ('{"type":"publish","room":"r","data":1,"id":[1]}', protocol.BAD_REQUEST),
        ('{"type":"publish","room":"r","data":1,"id":true}', protocol.BAD_REQUEST),
        ('{"type":"publish","room":"r","data":1,"ephemeral":"yes"}', protocol.BAD_REQUEST),
        ('{"type":"leave","room":7}', protocol.BAD_REQUEST),
    ],
)
def test_rejects_with_the_documented_code(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse(text)
    assert caught.value.code == code


def test_errors_carry_the_request_id() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse('{"type":"publish","room":"bad room","data":1,"id":42}')
    assert caught.value.request_id == 42


def test_deeply_nested_json_is_bad_json_not_a_crash() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse("[" * 100_000 + "]" * 100_000)
    assert caught.value.code == protocol.BAD_JSON


def test_message_frame_is_compact_json_with_every_field() -> None:
    sender = {"client_id": "a-1", "name": "ann", "user": "u42"}
    frame = protocol.message_frame("r", 3, sender, {"t": "é"}, 1700000000000)
    assert frame[0] == 0x81  # FIN + text
    body = json.loads(frame[2:])
    assert body == {
        "type": "message",
        "room": "r",
        "seq": 3,
        "from": "ann",
        "client_id": "a-1",
        "user": "u42",
        "data": {"t": "é"},
        "ts": 1700000000000,
    }
    assert protocol.frame_text(frame) == frame[2:].decode()
    assert b", " not in frame and "é".encode() in frame


def test_overflowing_float_data_cannot_be_relayed() -> None:
    command = parse('{"type":"publish","room":"r","data":1e999}')
    with pytest.raises(ProtocolError) as caught:
        protocol.message_frame("r", 1, {"name": "x"}, command.data, 0)
    assert caught.value.code == protocol.BAD_REQUEST


def test_lone_surrogates_are_relayed_escaped_not_crashed_on() -> None:
    command = parse('{"type":"publish","room":"r","data":"a\\udfffb","id":"\\ud800"}')
    frame = protocol.message_frame("r", 1, {"name": "x"}, command.data, 0)
    assert b"\\udfff" in frame and json.loads(frame[2:])["data"] == "a\udfffb"
    ack = protocol.encode({"type": "ack", "id": command.request_id})
    assert json.loads(ack[2:])["id"] == "\ud800"


def test_joined_frame_splices_the_encoded_member_list() -> None:
    members = [{"client_id": "a-1", "name": "zoë"}, {"client_id": "a-2", "name": "\ud800"}]
    encoded = members_array(protocol.to_json(m).encode() for m in members)
    [(opcode, payload)] = decode_frames(protocol.joined_frame("r", "e", 7, encoded))
    body = json.loads(payload)
    assert body == {"type": "joined", "room": "r", "epoch": "e", "seq": 7, "members": members}


def test_joined_frame_of_a_big_room_has_the_long_length_form_and_the_request_id() -> None:
    members = [{"client_id": f"c-{i}", "name": f"member {i}"} for i in range(2000)]  # ~80 KB
    encoded = members_array(protocol.to_json(m).encode() for m in members)
    frame = protocol.joined_frame("r", "e", 7, encoded, "\udfff", 5000, True)
    [(opcode, payload)] = decode_frames(frame)
    assert frame[1] == 127 and len(payload) > 0xFFFF  # the 8-byte length
    assert json.loads(payload) == {
        "type": "joined",
        "room": "r",
        "epoch": "e",
        "seq": 7,
        "member_count": 5000,
        "members_truncated": True,
        "id": "\udfff",
        "members": members,
    }
