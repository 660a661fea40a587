//! See [`crate::net`].
