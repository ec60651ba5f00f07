"""Live samplers behind `GET /system` and `herd top`: GPUs (NVML), the host (psutil) and
each running llama-server (/slots, /metrics), kept as a short history by `Sampler`."""

from llamaherd.gpus import FakeGpuSource, GpuReading, GpuSource, NvmlSource, gpu_source
from llamaherd.monitor.sampler import Sampler

__all__ = ["FakeGpuSource", "GpuReading", "GpuSource", "NvmlSource", "Sampler", "gpu_source"]
