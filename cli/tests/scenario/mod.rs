//! Scenarios: every shipped scenario validates, each schema mistake gives its located message, and the
//! reports render a fixed synthetic run (text snapshot, JSON round trip, JUnit through xmllint, HTML in
//! headless Chromium).

mod bad_schema;
mod cli;
mod report;
mod shipped;
mod support;
