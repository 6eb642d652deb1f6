"""Offline build pipeline: ERP data -> fine-tuned, pruned, quantized, evaluated model versions."""
