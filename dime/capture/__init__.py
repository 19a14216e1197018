"""Stage 1: capture a model as a chain of layers (torch.fx) and save sample feature maps."""
