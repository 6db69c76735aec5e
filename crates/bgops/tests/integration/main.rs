//! Integration tests of the facade: the seed's manager API over real backends.

mod manager;
