//! ring placeholder
