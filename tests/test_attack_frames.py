"""Attacks with crafted frame headers, checked without sockets."""

from __future__ import annotations

import pytest

from ember.kernel.errors import ProtocolError
from ember.kernel.protocol import Flag, FrameDecoder, MessageType, encode_frame


def test_get_and_set_together_rejected() -> None:
    decoder = FrameDecoder(max_body=1024)
    decoder.feed(encode_frame(MessageType.CALL, b"\x80", serializer_id=1, request_id=1,
                              flags=Flag.GET_ATTRIBUTE | Flag.SET_ATTRIBUTE))

    with pytest.raises(ProtocolError, match="both GET_ATTRIBUTE and SET_ATTRIBUTE") as caught:
        decoder.next_frame()
    assert caught.value.code == "bad-flags"


@pytest.mark.parametrize("flags", [Flag.ONEWAY | Flag.SET_ATTRIBUTE, Flag.GET_ATTRIBUTE,
                                   Flag.SET_ATTRIBUTE])
def test_single_property_flag_accepted(flags: Flag) -> None:
    decoder = FrameDecoder(max_body=1024)
    decoder.feed(encode_frame(MessageType.CALL, b"\x80", serializer_id=1, request_id=1,
                              flags=flags))

    frame = decoder.next_frame()

    assert not isinstance(frame, str)
    assert frame.flags == flags
