"""LLVM-level building blocks for the Numba kernels: explicit vectors, prefetch and atomics.

Numba leaves LLVM's SLP vectoriser off and does not contract or reassociate floating point, so a
16-partial-sum dot product written in Python compiles to scalar code. These intrinsics emit
``<16 x T>`` vector IR directly: the sums happen in exactly the order of ``sgd_lane_dot`` in
``csrc/include/fastrec/sgd.h`` (so Numba and Cython agree bit for bit) and LLVM maps the vector
onto whatever width the host has (one zmm, two ymm, four xmm). Rows must be C-contiguous.

The atomics (relaxed fetch-add, acquire load, release store on an int64 array element) give the
Numba SGD epoch the same barrier-free dataflow schedule as the Cython one.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16  # sgd.h's SGD_DOT_LANES

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _contiguous_rows(p, q) -> bool:
    return (isinstance(p, types.Array) and isinstance(q, types.Array) and p.ndim == q.ndim == 1
            and p.layout == q.layout == "C" and p.dtype == q.dtype
            and isinstance(p.dtype, types.Float))


def _vector_loop(builder, n):
    """(full, tail) loop contexts: j over [0, n - n % LANES) by LANES, then over the rest."""
    full = builder.sub(n, builder.srem(n, ir.Constant(_I64, LANES)))
    body = cgutils.for_range_slice(builder, ir.Constant(_I64, 0), full, ir.Constant(_I64, LANES))
    tail = cgutils.for_range_slice(builder, full, n, ir.Constant(_I64, 1))
    return full, body, tail


def _vector_at(builder, data, j, vty):
    return builder.bitcast(builder.gep(data, [j]), vty.as_pointer())


def _splat(builder, value, vty):
    vec = ir.Constant(vty, ir.Undefined)
    for lane in range(LANES):
        vec = builder.insert_element(vec, value, ir.Constant(_I32, lane))
    return vec


# Row widths that get straight-line code (LLVM unrolls loops of a constant trip count): the
# Cython kernel's constant-K cases, as padded by _cpu_layout.sgd_row_width.
SPECIALISED_WIDTHS = (16, 32, 64, 96, 112, 128)


def _specialised(builder, n, emit, result_type=None):
    """``emit(width)`` once per SPECIALISED_WIDTHS with ``width`` a constant, and once with the
    runtime ``n`` for any other width, chosen by a switch on ``n``; returns the result (a phi)
    when ``result_type`` is given."""
    default = builder.append_basic_block("width.other")
    done = builder.append_basic_block("width.done")
    switch = builder.switch(n, default)
    results = []
    for width in SPECIALISED_WIDTHS:
        block = builder.append_basic_block(f"width.{width}")
        switch.add_case(ir.Constant(n.type, width), block)
        builder.position_at_end(block)
        results.append((emit(ir.Constant(n.type, width)), builder.block))
        builder.branch(done)
    builder.position_at_end(default)
    results.append((emit(n), builder.block))
    builder.branch(done)
    builder.position_at_end(done)
    if result_type is None:
        return None
    phi = builder.phi(result_type)
    for value, block in results:
        phi.add_incoming(value, block)
    return phi


def _lane_dot_ir(context, builder, dtype, p, q, n):
    return _specialised(builder, n, lambda width: _lane_dot_loop(context, builder, dtype, p, q,
                                                                 width),
                        context.get_data_type(dtype))


def _lane_dot_loop(context, builder, dtype, p, q, n):
    vty = ir.VectorType(context.get_data_type(dtype), LANES)
    acc = cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * LANES))
    full, body, tail = _vector_loop(builder, n)
    with body as (j, _):
        prod = builder.fmul(builder.load(_vector_at(builder, p, j, vty), align=4),
                            builder.load(_vector_at(builder, q, j, vty), align=4))
        builder.store(builder.fadd(builder.load(acc), prod), acc)
    with tail as (j, _):
        lane = builder.trunc(builder.sub(j, full), _I32)
        prod = builder.fmul(builder.load(builder.gep(p, [j])), builder.load(builder.gep(q, [j])))
        vec = builder.load(acc)
        summed = builder.fadd(builder.extract_element(vec, lane), prod)
        builder.store(builder.insert_element(vec, summed, lane), acc)
    vec = builder.load(acc)
    width = LANES
    while width > 2:
        width //= 2
        halves = [ir.Constant(ir.VectorType(_I32, width), list(range(s, s + width)))
                  for s in (0, width)]
        vec = builder.fadd(builder.shuffle_vector(vec, vec, halves[0]),
                           builder.shuffle_vector(vec, vec, halves[1]))
    return builder.fadd(builder.extract_element(vec, ir.Constant(_I32, 0)),
                        builder.extract_element(vec, ir.Constant(_I32, 1)))


def _factor_step_ir(context, builder, dtype, p, q, n, step_s, shrink_s):
    _specialised(builder, n, lambda width: _factor_step_loop(context, builder, dtype, p, q, width,
                                                             step_s, shrink_s))


def _factor_step_loop(context, builder, dtype, p, q, n, step_s, shrink_s):
    vty = ir.VectorType(context.get_data_type(dtype), LANES)
    step_v, shrink_v = _splat(builder, step_s, vty), _splat(builder, shrink_s, vty)
    _, body, tail = _vector_loop(builder, n)

    def update(p_ptr, q_ptr, step, shrink, **align):
        p_old = builder.load(p_ptr, **align)
        q_old = builder.load(q_ptr, **align)
        builder.store(builder.fadd(builder.fmul(shrink, p_old), builder.fmul(step, q_old)),
                      p_ptr, **align)
        builder.store(builder.fadd(builder.fmul(shrink, q_old), builder.fmul(step, p_old)),
                      q_ptr, **align)

    with body as (j, _):
        update(_vector_at(builder, p, j, vty), _vector_at(builder, q, j, vty), step_v, shrink_v,
               align=4)
    with tail as (j, _):
        update(builder.gep(p, [j]), builder.gep(q, [j]), step_s, shrink_s)


@intrinsic
def lane_dot(typingctx, p, q):
    """``p . q`` with 16 interleaved partial sums, the tail into lanes 0.., reduced 8/4/2/1."""
    if not _contiguous_rows(p, q):
        return None

    def codegen(context, builder, signature, args):
        pty, qty = signature.args
        pa = context.make_array(pty)(context, builder, args[0])
        qa = context.make_array(qty)(context, builder, args[1])
        return _lane_dot_ir(context, builder, pty.dtype, pa.data, qa.data,
                            builder.extract_value(pa.shape, 0))

    return p.dtype(p, q), codegen


def _is_table(table) -> bool:
    return (isinstance(table, types.Array) and table.ndim == 2 and table.layout == "C"
            and isinstance(table.dtype, types.Float))


def _row_data(context, builder, table_ty, table, row, row_ty):
    """Pointer to ``table[row, 0]`` and the row length, without making a view (a view costs
    a reference-count round trip per call)."""
    arr = context.make_array(table_ty)(context, builder, table)
    width = builder.extract_value(arr.shape, 1)
    start = builder.mul(context.cast(builder, row, row_ty, types.int64), width)
    return builder.gep(arr.data, [start]), width


@intrinsic
def table_lane_dot(typingctx, p_table, p_row, q_table, q_row):
    """``lane_dot(p_table[p_row], q_table[q_row])`` for two tables of the same width."""
    if not (_is_table(p_table) and _is_table(q_table) and p_table.dtype == q_table.dtype
            and isinstance(p_row, types.Integer) and isinstance(q_row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pty, prt, qty, qrt = signature.args
        p, n = _row_data(context, builder, pty, args[0], args[1], prt)
        q, _ = _row_data(context, builder, qty, args[2], args[3], qrt)
        return _lane_dot_ir(context, builder, pty.dtype, p, q, n)

    return p_table.dtype(p_table, p_row, q_table, q_row), codegen


@intrinsic
def table_factor_step(typingctx, p_table, p_row, q_table, q_row, step, shrink):
    """``factor_rows_step(p_table[p_row], q_table[q_row], step, shrink)`` without views."""
    if not (_is_table(p_table) and _is_table(q_table) and p_table.dtype == q_table.dtype
            and isinstance(p_row, types.Integer) and isinstance(q_row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        pty, prt, qty, qrt, step_ty, shrink_ty = signature.args
        p, n = _row_data(context, builder, pty, args[0], args[1], prt)
        q, _ = _row_data(context, builder, qty, args[2], args[3], qrt)
        _factor_step_ir(context, builder, pty.dtype, p, q, n,
                        context.cast(builder, args[4], step_ty, pty.dtype),
                        context.cast(builder, args[5], shrink_ty, pty.dtype))
        return context.get_dummy_value()

    return types.none(p_table, p_row, q_table, q_row, step, shrink), codegen


@intrinsic
def prefetch_row(typingctx, table, row):
    """Prefetch every cache line of ``table[row]`` (2-D, C-contiguous) for writing."""
    if not (isinstance(table, types.Array) and table.ndim == 2 and table.layout == "C"
            and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        table_ty, row_ty = signature.args
        arr = context.make_array(table_ty)(context, builder, args[0])
        byte_ptr = ir.IntType(8).as_pointer()
        width = builder.extract_value(arr.shape, 1)
        start = builder.mul(context.cast(builder, args[1], row_ty, types.int64), width)
        base = builder.bitcast(builder.gep(arr.data, [start]), byte_ptr)
        item = context.get_abi_sizeof(context.get_data_type(table_ty.dtype))
        n_bytes = builder.mul(width, ir.Constant(_I64, item))
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, _I32, _I32, _I32]),
            "llvm.prefetch.p0")
        with cgutils.for_range_slice(builder, ir.Constant(_I64, 0), n_bytes,
                                     ir.Constant(_I64, 64)) as (offset, _):
            # write, keep in all levels, data cache
            builder.call(prefetch, [builder.gep(base, [offset]), ir.Constant(_I32, 1),
                                    ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.none(table, row), codegen


def _int64_cell(context, builder, array_ty, array, index, index_ty):
    arr = context.make_array(array_ty)(context, builder, array)
    return builder.gep(arr.data, [context.cast(builder, index, index_ty, types.int64)])


def _int64_vector(array):
    return isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.int64


@intrinsic
def atomic_fetch_add(typingctx, array, index, value):
    """``array[index] += value`` atomically (relaxed); returns the old value."""
    if not (_int64_vector(array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_ty, index_ty, value_ty = signature.args
        cell = _int64_cell(context, builder, array_ty, args[0], args[1], index_ty)
        amount = context.cast(builder, args[2], value_ty, types.int64)
        return builder.atomic_rmw("add", cell, amount, "monotonic")

    return types.int64(array, index, value), codegen


@intrinsic
def atomic_load_acquire(typingctx, array, index):
    """``array[index]`` with acquire ordering."""
    if not (_int64_vector(array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_ty, index_ty = signature.args
        cell = _int64_cell(context, builder, array_ty, args[0], args[1], index_ty)
        return builder.load_atomic(cell, "acquire", 8)

    return types.int64(array, index), codegen


@intrinsic
def atomic_store_release(typingctx, array, index, value):
    """``array[index] = value`` with release ordering."""
    if not (_int64_vector(array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_ty, index_ty, value_ty = signature.args
        cell = _int64_cell(context, builder, array_ty, args[0], args[1], index_ty)
        builder.store_atomic(context.cast(builder, args[2], value_ty, types.int64), cell,
                             "release", 8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def yield_cpu(typingctx):
    """``sched_yield()``: let a descheduled producer run instead of spinning on its core."""

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32, []),
                                            "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen
