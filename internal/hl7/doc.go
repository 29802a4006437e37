// Package hl7 parses, validates and encodes HL7 version 2 messages, splits batch files and builds
// messages (Builder, Edit) and acknowledgments.
//
// Parsing is zero-copy: Parse indexes segment and field boundaries once and keeps a reference to the input;
// repetitions, components and subcomponents are located, and escape sequences and character sets decoded, only
// when a value is read. Values that need no decoding are substrings of one copy of the message made on the first
// read, so reading fields does not allocate. Errors locate problems (line, segment, field, repetition,
// component) and never quote message content, which is protected health information.
//
// The package does no I/O.
package hl7
