//! Runnable examples of bgops: see the `[[example]]` entries of this package.
