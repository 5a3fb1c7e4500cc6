//! Dockerfile parsing and variable expansion.
