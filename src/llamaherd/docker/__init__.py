"""Docker: herd's image (the Dockerfile, `herd build --docker`).

The docker runtime and compose files are in runtime/. The docker CLI is the only
interface to Docker herd uses, so a fake CLI on PATH can stand in for it in tests.
"""
