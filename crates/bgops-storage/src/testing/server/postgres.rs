//! The throwaway `postgres` server launcher.
