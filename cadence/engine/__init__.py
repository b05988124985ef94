"""The engine: durable state, enrollments, triggers, steps and the scheduler that runs them."""
