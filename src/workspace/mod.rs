//! Parses and validates the workspace files into a typed model; never touches the database.
