//! The throwaway `redis` server launcher.
