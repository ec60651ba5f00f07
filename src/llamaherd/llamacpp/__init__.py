"""llama.cpp itself: the pinned source and its build (`build`), finding the programs
(`binaries`), moving to a newer release (`update`), the CUDA toolkit and GPU
architectures (`cuda`), and herd's Docker image (`image`, `Dockerfile`)."""
