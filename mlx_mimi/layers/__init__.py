"""Mimi layers: convolutions, SEANet, transformer, quantizer (channels-last, stateful)."""
