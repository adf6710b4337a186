"""One-shot, calibrated, layer-wise methods: gptq, awq, smoothquant, sparsegpt, wanda.

Each runs on a few hundred calibration samples (the batch adapter reads the user's
data), layer group by layer group in forward order (`layerwise.sequential`): a group's
inputs are recorded from the model whose earlier layers are already compressed.
"""
