//! The app store (see below).
