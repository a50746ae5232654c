"""switchboard-client: ask Switchboard which model to call, call it with the provider's official SDK, report what it used.

    from switchboard_client import Switchboard
    sb = Switchboard(os.environ["SWITCHBOARD_URL"], os.environ["SWITCHBOARD_KEY"])
    reply = sb.messages(category="general", messages=[{"role": "user", "content": "Hello"}], max_tokens=800)
"""

__version__ = "0.1.0"

from switchboard_client.api import Decision, Model  # noqa: E402
from switchboard_client.chat import AsyncChatStream, ChatChunk, ChatResponse, ChatStream, ToolCall  # noqa: E402
from switchboard_client.client import AsyncSwitchboard, Switchboard  # noqa: E402
from switchboard_client.errors import (  # noqa: E402
    AttemptsExhausted,
    FailedFast,
    NoCapacity,
    QuotaExceeded,
    RateLimited,
    Refused,
    RequestError,
    SwitchboardError,
    Unavailable,
)
from switchboard_client.failopen import FailOpen  # noqa: E402
from switchboard_client.routed import AsyncRoutedCall, RoutedCall  # noqa: E402
from switchboard_client.streams import AsyncReportingStream, ReportingStream  # noqa: E402
from switchboard_client.usage import Failure, Observation, Usage, failure_for, observe  # noqa: E402

__all__ = [
    "AsyncChatStream", "AsyncReportingStream", "AsyncRoutedCall", "AsyncSwitchboard", "AttemptsExhausted", "ChatChunk", "ChatResponse",
    "ChatStream", "Decision", "FailOpen", "FailedFast", "Failure", "Model", "NoCapacity", "Observation", "QuotaExceeded", "RateLimited",
    "Refused", "ReportingStream", "RequestError", "RoutedCall", "Switchboard", "SwitchboardError", "ToolCall", "Unavailable", "Usage",
    "__version__", "failure_for", "observe",
]
