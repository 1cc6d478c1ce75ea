"""vsock-fuzz: fuzzing and property testing for virtio-vsock packet parsing."""

__version__ = "0.1.0"
