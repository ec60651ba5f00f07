"""The management API's answers as pydantic models: the one contract between the daemon
(daemon/api.py declares them as `response_model`, so /openapi.json shows them) and its
clients (client.py for the CLI and scripts, tui/remote.py for the dashboard), which
parse every answer into them. docs/api.md explains what each field means.

Unknown fields are ignored, so a client keeps working against a newer daemon that adds
some. One module per part of the API (common, models, status, system, router, console,
activity, ollama); `from llamaherd.schema import X` imports only X's module, so a command builds
the classes of the answers it parses and no others (`herd models` builds ModelRow's, not
/system's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamaherd.lazy import attribute_loader

if TYPE_CHECKING:
    from llamaherd.schema.activity import (
        ActivityPage,
        ActivityRecord,
        Capture,
    )
    from llamaherd.schema.common import (
        Answer,
        ErrorAnswer,
        Health,
        ModelState,
        ProfileState,
        Reading,
    )
    from llamaherd.schema.console import BenchReport, ConsoleConfig
    from llamaherd.schema.models import (
        MemoryEstimate,
        ModelList,
        ModelRow,
    )
    from llamaherd.schema.ollama import (
        OllamaChatChunk,
        OllamaChatRequest,
        OllamaDetails,
        OllamaEmbed,
        OllamaEmbedding,
        OllamaEmbedRequest,
        OllamaError,
        OllamaGenerateChunk,
        OllamaGenerateRequest,
        OllamaMessage,
        OllamaPs,
        OllamaRunning,
        OllamaShow,
        OllamaShowRequest,
        OllamaTag,
        OllamaTags,
        OllamaVersion,
    )
    from llamaherd.schema.router import (
        LoadProgress,
        RouterDone,
        RouterEvent,
        RouterModel,
        RouterModelList,
        RouterStatus,
    )
    from llamaherd.schema.status import (
        Admission,
        AdmissionQuery,
        Daemon,
        Device,
        Failure,
        HerdState,
        KvCache,
        KvFile,
        KvRestore,
        LogPage,
        ModelStatus,
        Reloaded,
        ReloadRefused,
        RpcWorker,
        ShuttingDown,
        Status,
        Stopped,
        SwitchDone,
        SwitchFailed,
        SwitchReply,
    )
    from llamaherd.schema.system import (
        Disk,
        Gpu,
        GpuProcess,
        History,
        Host,
        LoadedModel,
        ServerLive,
        SystemSnapshot,
        Top,
    )

# Searched in this order, the most used first: `herd models` builds common and models
# only, `herd status` common, models and status.
_PARTS = ("common", "models", "status", "system", "router", "console", "activity", "ollama")

__all__ = [
    "ActivityPage",
    "ActivityRecord",
    "Admission",
    "AdmissionQuery",
    "Answer",
    "BenchReport",
    "ConsoleConfig",
    "Capture",
    "Daemon",
    "Device",
    "Disk",
    "ErrorAnswer",
    "Failure",
    "Gpu",
    "GpuProcess",
    "Health",
    "HerdState",
    "History",
    "Host",
    "KvCache",
    "KvFile",
    "KvRestore",
    "LoadProgress",
    "LoadedModel",
    "LogPage",
    "MemoryEstimate",
    "ModelList",
    "ModelRow",
    "ModelState",
    "ModelStatus",
    "OllamaChatChunk",
    "OllamaChatRequest",
    "OllamaDetails",
    "OllamaEmbed",
    "OllamaEmbedRequest",
    "OllamaEmbedding",
    "OllamaError",
    "OllamaGenerateChunk",
    "OllamaGenerateRequest",
    "OllamaMessage",
    "OllamaPs",
    "OllamaRunning",
    "OllamaShow",
    "OllamaShowRequest",
    "OllamaTag",
    "OllamaTags",
    "OllamaVersion",
    "ProfileState",
    "Reading",
    "ReloadRefused",
    "Reloaded",
    "RouterDone",
    "RouterEvent",
    "RouterModel",
    "RouterModelList",
    "RouterStatus",
    "RpcWorker",
    "ServerLive",
    "ShuttingDown",
    "Status",
    "Stopped",
    "SwitchDone",
    "SwitchFailed",
    "SwitchReply",
    "SystemSnapshot",
    "Top",
]


__getattr__ = attribute_loader(__name__, __all__, _PARTS)
