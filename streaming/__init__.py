"""Streaming: capture workers, ASR, windowing, health monitor, fault injection, pipeline."""
