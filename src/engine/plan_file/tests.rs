//! `build` and the export: a round trip changes nothing, every refusal is collected with
//! its path, replace and merge differ only in what the document leaves out.
