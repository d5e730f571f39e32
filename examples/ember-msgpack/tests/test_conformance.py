"""The msgpack serializer against ember's conformance suite.

Run with ``pytest`` from this folder after ``pip install -e .``. The capabilities are
the ones the published conformance profile declares, so this run and
``ember conformance --plugin msgpack`` check the same promises.
"""

import pytest
from ember_msgpack.conformance import CAPABILITIES
from ember_msgpack.serializer import MsgpackSerializer

from ember.testing import SerializerConformance


class TestMsgpack(SerializerConformance):
    capabilities = CAPABILITIES

    @pytest.fixture
    def serializer(self):
        return MsgpackSerializer()


def test_tuple_rejected():
    with pytest.raises(TypeError, match="cannot encode tuple"):
        MsgpackSerializer().dumps((1, 2))
