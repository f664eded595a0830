"""The training runtime shared by every system: the schedule engine (`schedule`), the
data-parallel strategy (`distributed`), the per-iteration random draws (`rng`), the
learning-rate policies that configs name as `_target_`s (`lr_schedulers`), and the memory
allocator settings of CPU training (`allocator`)."""
