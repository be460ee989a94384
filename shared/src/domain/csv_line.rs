//! CSV lines written through the `csv` crate, a field at a time, for the files whose columns quote
//! differently: a free-text column (a reason) is always quoted, as the batch results and error
//! reports always were, and any other field only when it must be (a comma, a quote, a line break).
//! The crate decides the quoting and escapes; one [`CsvLine`] is reused for every line of a file,
//! so a line allocates nothing once the buffers have grown.

use std::cell::RefCell;
use std::fmt::{Display, Write as _};
use std::io;

/// Builds CSV lines into a caller's buffer: [`field`](Self::field)s and [`text`](Self::text)s,
/// then [`end`](Self::end).
pub struct CsvLine {
    necessary: Encoder,
    always: Encoder,
    /// Fields on the current line so far.
    fields: usize,
    /// Plain fields given to `necessary` and not yet taken out: consecutive ones are one record
    /// to the crate (one call instead of one per field), and whether the first was empty.
    run: usize,
    run_starts_empty: bool,
    /// For [`display`](Self::display).
    scratch: String,
}

impl Default for CsvLine {
    fn default() -> Self {
        CsvLine::new()
    }
}

impl CsvLine {
    pub fn new() -> Self {
        CsvLine {
            necessary: Encoder::new(csv::QuoteStyle::Necessary),
            always: Encoder::new(csv::QuoteStyle::Always),
            fields: 0,
            run: 0,
            run_starts_empty: false,
            scratch: String::with_capacity(32),
        }
    }

    /// A field, quoted only when it must be; empty is nothing between the commas.
    pub fn field(&mut self, out: &mut Vec<u8>, value: &str) {
        if self.run == 0 {
            self.delimit(out);
            self.run_starts_empty = value.is_empty();
        }
        self.necessary.push(value);
        self.run += 1;
    }

    /// A free-text field, always quoted.
    pub fn text(&mut self, out: &mut Vec<u8>, value: &str) {
        self.end_run(out);
        self.delimit(out);
        self.always.push(value);
        self.always.take(out, false);
    }

    /// A number or another value by its `Display`, as [`field`](Self::field).
    pub fn display(&mut self, out: &mut Vec<u8>, value: impl Display) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        // Writing into a String cannot fail.
        let _ = write!(s, "{value}");
        self.field(out, &s);
        self.scratch = s;
    }

    /// Ends the line.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        self.end_run(out);
        out.push(b'\n');
        self.fields = 0;
    }

    /// A whole line of fields (a header, a row with no free text).
    pub fn record<'a>(&mut self, out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a str>) {
        for f in fields {
            self.field(out, f);
        }
        self.end(out);
    }

    fn delimit(&mut self, out: &mut Vec<u8>) {
        if self.fields > 0 {
            out.push(b',');
        }
        self.fields += 1;
    }

    fn end_run(&mut self, out: &mut Vec<u8>) {
        if self.run > 0 {
            // The crate writes a record of one empty field as `""`; here it is one column of many.
            let discard = self.run == 1 && self.run_starts_empty;
            self.necessary.take(out, discard);
            self.run = 0;
        }
    }
}

/// One quoting rule: a csv writer that encodes one field at a time into a sink we can drain.
struct Encoder {
    writer: csv::Writer<Sink>,
}

impl Encoder {
    fn new(style: csv::QuoteStyle) -> Self {
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .flexible(true)
            .quote_style(style)
            .terminator(csv::Terminator::Any(b'\n'))
            .buffer_capacity(1 << 10)
            .from_writer(Sink::default());
        Encoder { writer }
    }

    /// One more field of the record being built.
    fn push(&mut self, value: &str) {
        // A Vec sink cannot fail.
        let _ = self.writer.write_field(value);
    }

    /// Ends the record and appends it as the crate encoded it, without its line break (or drops
    /// it).
    fn take(&mut self, out: &mut Vec<u8>, discard: bool) {
        // `flexible`: records may have any number of fields.
        let _ = self.writer.write_record(None::<&[u8]>);
        let _ = self.writer.flush();
        let mut sink = self.writer.get_ref().0.borrow_mut();
        if !discard {
            let record = sink.strip_suffix(b"\n").unwrap_or(&sink);
            out.extend_from_slice(record);
        }
        sink.clear();
    }
}

/// Where an [`Encoder`]'s writer flushes to. Interior mutability: the csv writer only lends
/// its sink by shared reference.
#[derive(Default)]
struct Sink(RefCell<Vec<u8>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(build: impl FnOnce(&mut CsvLine, &mut Vec<u8>)) -> String {
        let (mut csv, mut out) = (CsvLine::new(), Vec::new());
        build(&mut csv, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_fields_are_quoted_only_when_they_must_be_and_text_always() {
        let got = line(|c, out| {
            c.field(out, "tx-1");
            c.display(out, 0.25);
            c.field(out, "");
            c.text(out, "no comma here");
            c.text(out, "");
            c.field(out, "a,b");
            c.text(out, "t");
            c.field(out, "");
            c.text(out, "u");
            c.field(out, "");
            c.field(out, "v");
            c.end(out);
            c.record(out, ["x", "y"]);
            c.record(out, ["", ""]);
        });
        assert_eq!(
            got,
            "tx-1,0.25,,\"no comma here\",\"\",\"a,b\",\"t\",,\"u\",,v\nx,y\n,\n"
        );
    }

    #[test]
    fn commas_quotes_and_line_breaks_read_back_through_the_crate() {
        let odd = ["a,b", "say \"hi\"", "two\nlines", "cr\r", "\"", ",", " lead", "é,ü"];
        let mut out = Vec::new();
        let mut c = CsvLine::new();
        for v in odd {
            c.field(&mut out, v);
            c.text(&mut out, v);
        }
        c.end(&mut out);
        c.field(&mut out, "next");
        c.end(&mut out);
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&out[..]);
        let records: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        let want: Vec<&str> = odd.iter().flat_map(|v| [*v, *v]).collect();
        assert_eq!(records[0].iter().collect::<Vec<_>>(), want);
        assert_eq!(records[1].iter().collect::<Vec<_>>(), ["next"]);
        assert_eq!(records.len(), 2);
    }
}
