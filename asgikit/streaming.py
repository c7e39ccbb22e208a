"""PLACEHOLDER: streaming responses arrive with issue 5."""

from asgikit.responses import Response


class StreamingResponse(Response):
    pass


class EventSourceResponse(StreamingResponse):
    pass


class NDJSONResponse(StreamingResponse):
    pass


class ServerSentEvent:
    pass
