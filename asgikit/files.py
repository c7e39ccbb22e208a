"""PLACEHOLDER: FileResponse arrives with issue 6."""

from asgikit.responses import Response


class FileResponse(Response):
    pass
