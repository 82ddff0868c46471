"""Getting recorded events to a worker: enqueue, pending sets, drain jobs, the sweep."""
