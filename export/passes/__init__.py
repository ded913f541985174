"""Graph passes: pure functions ``nn.Module | GraphModule -> same`` that keep the function."""
