"""hean: a Kubernetes-native crypto trading system (operator, worker, native engine)."""

__version__ = "0.1.0"
