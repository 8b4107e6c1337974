"""MCP's stdio framing, driven without any I/O: bytes in, messages or error replies out."""

from __future__ import annotations

import json

import mcp_types as types
from localagent_mcp._framing import LineDecoder, encode, error_reply

PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


def test_messages_split_anywhere_come_out_whole_and_in_order() -> None:
    stream = PING + b"\n" + b'{"jsonrpc":"2.0","method":"notifications/initialized"}\r\n'
    decoder = LineDecoder()
    decoded = [
        item for byte in range(len(stream)) for item in decoder.feed(stream[byte : byte + 1])
    ]
    messages = [message for message, error in decoded if error is None]
    assert [type(message) for message in messages] == [
        types.JSONRPCRequest,
        types.JSONRPCNotification,
    ]
    assert isinstance(messages[0], types.JSONRPCRequest) and messages[0].id == 1


def test_blank_lines_are_skipped_and_a_last_line_without_newline_counts_at_the_end() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b"\n  \n" + PING) == []
    [(message, error)] = decoder.finish()
    assert error is None and isinstance(message, types.JSONRPCRequest)
    assert decoder.finish() == []


def test_invalid_json_is_a_parse_error_and_the_next_line_still_decodes() -> None:
    [(none, error), (message, no_error)] = LineDecoder().feed(b"{not json\n" + PING + b"\n")
    assert none is None and error is not None
    assert error.error.code == types.PARSE_ERROR == -32700
    assert error.id is None
    assert no_error is None and isinstance(message, types.JSONRPCRequest)


def test_invalid_utf8_is_a_parse_error() -> None:
    [(_, error)] = LineDecoder().feed(b'{"a": "\xff\xfe"}\n')
    assert error is not None and error.error.code == types.PARSE_ERROR


def test_json_that_is_no_jsonrpc_message_is_an_invalid_request_with_its_id() -> None:
    lines = [b"[1, 2]", b'"text"', b'{"jsonrpc":"2.0","id":7,"method":5}', b'{"id":true}']
    decoded = LineDecoder().feed(b"\n".join(lines) + b"\n")
    errors = [error for _message, error in decoded]
    assert all(error is not None for error in errors)
    assert [error.error.code for error in errors if error] == [types.INVALID_REQUEST] * 4
    assert [error.id for error in errors if error] == [None, None, 7, None]  # true is no id


def test_encode_is_one_compact_line_by_wire_names() -> None:
    result = types.JSONRPCResponse(jsonrpc="2.0", id="a", result={"isError": False})
    line = encode(result)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"jsonrpc": "2.0", "id": "a", "result": {"isError": False}}
    assert json.loads(encode(error_reply(types.PARSE_ERROR, "Parse error"))) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error"},
    }


def test_a_line_over_the_limit_gets_one_error_and_is_never_held_whole() -> None:
    decoder = LineDecoder(max_line=1000)
    decoded = []
    for _ in range(50):  # 50 kB of one line, in pieces, never a newline
        decoded += decoder.feed(b"x" * 1000)
        assert decoder._size <= decoder.max_line
    [(none, error)] = decoded
    assert none is None and error is not None
    assert (error.id, error.error.code) == (None, types.INVALID_REQUEST)
    assert "longer than 1000 bytes" in error.error.message
    # The rest of that line up to its newline is dropped; the next line decodes.
    [(message, no_error)] = decoder.feed(b"tail of the long line\n" + PING + b"\n")
    assert no_error is None and isinstance(message, types.JSONRPCRequest)


def test_a_whole_line_over_the_limit_in_one_piece_is_refused_and_its_neighbours_decode() -> None:
    long_line = b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"' + b"y" * 200 + b'"}}'
    decoded = LineDecoder(max_line=100).feed(PING + b"\n" + long_line + b"\n" + PING + b"\n")
    assert [error.error.code if error else None for _message, error in decoded] == [
        None,
        types.INVALID_REQUEST,
        None,
    ]
    exactly = LineDecoder(max_line=len(PING))
    assert exactly.feed(PING) == [] and exactly.finish()[0][1] is None  # the limit is inclusive


def test_the_cli_default_is_the_decoders() -> None:
    from localagent_mcp._cli import mcp
    from localagent_mcp._framing import MAX_LINE

    [option] = [param for param in mcp.params if param.name == "max_line"]
    assert option.default == MAX_LINE
