"""Finding 4 of issue 21 through the real console script: ``drugrepo validate`` on a 4 GB sparse CSV
and on a Parquet file of 20 M rows (a few hundred KB) read them whole (> 6 GB, killed; 5.1 GB and no
answer after 150 s). Each is now refused from its size or its metadata: exit 2, one line naming the
file and the limit, and the process's peak RSS under 1 GiB (it was measured at about 120 MB: the
interpreter and its imports). A binary file as a ``screen`` library is refused the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from drugrepo_assets.data.limits import LIMIT_VARIABLES, MAX_TABLE_BYTES, MAX_TABLE_ROWS
from drugrepo_assets_tests.cli.helpers import console_script, golden_inputs, screen_args

PEAK_RSS_BOUND = 1 << 30
"""What a refusal may take, the whole process included (the findings' runs took > 5 GB)."""

_MEASURED = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr, "peak": peak}))
    """
)


def _measured(args: list[str]) -> dict:
    """``drugrepo ARGS`` run in a fresh wrapper process: exit status, output and the command's peak RSS."""
    wrapper = subprocess.run(
        [sys.executable, "-c", _MEASURED, console_script(), *args], capture_output=True, text=True, check=True
    )
    return json.loads(wrapper.stdout)


def _one_error_line(done: dict, command: str) -> str:
    lines = [line for line in done["err"].splitlines() if line.startswith(f"drugrepo {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in done["err"], done["err"]
    return lines[0].removeprefix(f"drugrepo {command}: error: ")


def test_validate_refuses_a_sparse_4_gb_csv_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"SMILES,Protein,Y\n")
    subprocess.run(["truncate", "-s", str(4 << 30), str(path)], check=True)
    done = _measured(["validate", str(path), "--out", str(tmp_path / "out")])
    assert done["rc"] == 2, done
    assert _one_error_line(done, "validate") == (
        f"{path}: {4 << 30:,} bytes: more than the limit of {MAX_TABLE_BYTES:,} bytes for a table read whole "
        f"(set {LIMIT_VARIABLES['table_bytes']} to change it)"
    )
    assert done["peak"] < PEAK_RSS_BOUND, f"peak RSS {done['peak']:,} bytes"
    assert not (tmp_path / "out" / "valid.parquet").exists()


def test_validate_refuses_20_million_parquet_rows_from_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    index = pa.array(np.zeros(1_000_000, dtype=np.int32))
    part = pa.table(
        {
            "SMILES": pa.DictionaryArray.from_arrays(index, pa.array(["CCO"])),
            "Protein": pa.DictionaryArray.from_arrays(index, pa.array(["MKVLAAGIVALLLAAGCSS"])),
            "Y": pa.DictionaryArray.from_arrays(index, pa.array(["1"])),
        }
    )
    with pq.ParquetWriter(path, part.schema, compression="zstd", store_schema=False) as writer:
        for _ in range(20):
            writer.write_table(part)
    assert pq.ParquetFile(path).metadata.num_rows == 20_000_000 and path.stat().st_size < 2 << 20
    done = _measured(["validate", str(path), "--out", str(tmp_path / "out")])
    assert done["rc"] == 2, done
    assert _one_error_line(done, "validate") == (
        f"{path}: 20,000,000 rows: more than the limit of {MAX_TABLE_ROWS:,} rows for a table read whole "
        f"(set {LIMIT_VARIABLES['table_rows']} to change it)"
    )
    assert done["peak"] < PEAK_RSS_BOUND, f"peak RSS {done['peak']:,} bytes"


def test_screen_refuses_a_binary_library_naming_it(tmp_path: Path, golden_dir: Path) -> None:
    golden_inputs(tmp_path, golden_dir)
    library = tmp_path / "lib.smi"
    library.write_bytes(b"CCO m1\n")
    subprocess.run(["truncate", "-s", str(4 << 30), str(library)], check=True)
    done = _measured(screen_args(tmp_path, golden_dir))
    assert done["rc"] == 2, done
    assert _one_error_line(done, "screen") == (f"{library}: binary content, not text (NUL byte at offset 7, line 2)")
    assert done["peak"] < PEAK_RSS_BOUND, f"peak RSS {done['peak']:,} bytes"
