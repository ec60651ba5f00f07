"""Docker: the image (Dockerfile, `herd build --docker`), the docker runtime, compose files.

The docker CLI is the only interface to Docker herd uses, so a fake CLI on PATH can stand
in for it in tests.
"""
