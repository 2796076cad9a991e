"""unlearn-lab: make generative models forget."""
