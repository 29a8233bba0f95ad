"""The models on disk: names, manifests and blobs, GGUF headers, Modelfiles, creating and reading models."""
