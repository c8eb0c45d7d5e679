//! The longer explanations `lstore help COMMAND` (or `COMMAND --help`) shows after a
//! command's options.

/// After the top-level help.
pub const TOPICS: &str = "\
REF is a layer or container name, an id, or a unique id prefix (4 or more hex digits).
Keys are byte strings; one leading / is dropped, as paths have one.

More help: 'lstore help build' (Layerfile syntax, the build cache), 'lstore help init'
(sizes and their units), 'lstore help ls' (what PREFIX means).";

/// After `build`'s options.
pub const LAYERFILE: &str = "\
LAYERFILE SYNTAX
  One instruction per line. Blank lines and lines starting with # are skipped; instruction
  names are case-insensitive; a leading / of a key is dropped.

  FROM scratch | FROM LAYER
      The first instruction, exactly once: start from nothing, or on top of a layer of the
      store (name, id or id prefix).
  COPY [--chown=UID[:GID]] SRC KEY
      Copy the host file or folder SRC (relative to the Layerfile's folder). A folder's
      regular files go below KEY/ by their paths inside SRC; a file becomes KEY (or KEY/NAME
      when KEY ends with /). Each keeps its mode and mtime and is owned by root, or by
      UID:GID with --chown (as numbers); folders above them that the layer lacks are made
      (mode 755, same owner), as Docker's COPY does.
  SET KEY TEXT
      Store the rest of the line as KEY's value.
  DEL KEY
      Delete KEY.

  Example:
      # the app image
      FROM base
      COPY app /srv/app
      SET etc/app.conf debug = false

ONE LAYER PER STEP, AND THE BUILD CACHE
  Every instruction after FROM makes one layer on top of the previous one. A step is looked
  up in the store's build cache by its parent layer and its text, and for COPY the names,
  sizes and content of the files it copies. When found, its layer is reused ('cached') and
  nothing is written; otherwise the step runs ('built'). A built step gives every later step
  a new parent, so they are built too: put what changes often last.

  The output names each step and ends with the final layer's id (--json: one object with
  'steps' and 'layer'); --name tags the final layer.";

/// After `init`'s options.
pub const SIZES: &str = "\
SIZES
  A size is a number of bytes with an optional unit: K, M or G (or KB/KiB, MB/MiB, GB/GiB, in
  any case), all powers of 1024: 4K = 4096, 64M = 67108864, 1G = 1073741824. A size that does
  not parse is a usage error (exit 2); one out of range is refused when the store is created.

  --block-size    a power of two from 4K to 1M: the unit of copy-on-write. A write into a
                  value copies the blocks it touches, so smaller blocks make small writes
                  cheaper and block maps larger.
  --segment-size  a power of two from 4M to 1G: the file grows, and gc gives space back, in
                  whole segments.";

/// `ls`'s long description.
pub const LS: &str = "\
List keys with their sizes: one line per key, KEY<TAB>SIZE (--json: an array of {key, size}).
Keys are byte strings, written escaped as bash's $'...' reads them: a byte that is not UTF-8
or a control character as \\xHH, a backslash as \\\\, tab and newline as \\t and \\n; the
same in text and JSON, so every key can be typed back.

PREFIX is read as a path, not as the first bytes of keys: 'ls REF etc' (or 'ls REF etc/')
lists etc itself, if there is such an entry, and everything below etc/, but not etcetera.
Leading slashes are dropped. Without PREFIX every key is listed. The order is folder by
folder: a folder's own entries by name, then the folders below it.";
