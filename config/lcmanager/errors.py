"""The error raised when a request body does not fit its contract."""

from rest_framework.exceptions import ParseError


class FormatError(ParseError):
    """A value in the request does not fit the contract.

    `field` is the wire name or a dotted path such as `CardPhoneClientList[3].Phone`
    (None when the problem is the body as a whole); `message` is one English sentence.

    It subclasses DRF's `ParseError` so that one raised inside a view, or by a
    parser (form list indexes with gaps, a field given twice), still becomes a
    400 answer even where no exception handler knows about it. A handler that
    wants the field must test for `FormatError` before `ParseError`.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(detail=message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message
