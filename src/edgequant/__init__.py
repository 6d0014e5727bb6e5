"""edgequant: quantize neural networks for edge targets, and prove what ships."""
