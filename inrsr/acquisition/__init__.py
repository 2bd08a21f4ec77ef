"""How stacks are acquired: slice profiles, the forward model (field → thick voxel), and
thick stacks simulated from an isotropic volume (plus the synthetic head phantom)."""
