//! The throwaway `nats` server launcher.
