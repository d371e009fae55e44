"""Training LaMa: the losses and the parts of the official trainer they need."""
