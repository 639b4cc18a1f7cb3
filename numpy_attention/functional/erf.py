"""The error function, vectorized, accurate to float64 rounding: W. J. Cody's rational approximations.

NumPy has no vectorized ``erf`` (``math.erf`` takes one Python float at a time,
and ``scipy.special.erf`` would make scipy a runtime dependency for one
function). The exact GELU needs ``erf`` on every activation, so it is written
here, numpy only, from

    W. J. Cody, "Rational Chebyshev approximations for the error function",
    Math. Comp. 23 (1969), pp. 631-638,

in the arrangement of Cody's later CALERF (netlib specfun, 1990). Three intervals of
``y = |x|``, each with a near-minimax rational function good to ~18 digits::

    y <= 0.46875:      erf(x)  = x * A(y^2) / B(y^2)
    0.46875 < y <= 4:  erfc(y) = exp(-y^2) * C(y) / D(y)
    y > 4:             erfc(y) = exp(-y^2) / y * (1/sqrt(pi) + R(1/y^2) / S(1/y^2) / y^2)

and ``erf = 1 - erfc``, ``erfc(-y) = 2 - erfc(y)``. ``exp(-y^2)`` is computed as
``exp(-z^2) * exp(-(y - z)(y + z))`` with ``z`` = y rounded down to a multiple of 1/16:
``z^2`` is exact, so the rounding error of ``y^2`` (amplified by ``y^2`` in the
exponential) never enters. Arrays are evaluated in their own dtype (float32 stays float32).

float32 holds 7 digits, not Cody's 18, and for it ``erfc`` takes one formula on every
``y = |x|``, the form of Numerical Recipes' ``erfcc`` (Press et al., section 6.2)::

    erfc(y) = t * exp(-y^2 + E(t)),   t = 1 / (1 + y / 2)

with ``E`` a polynomial of degree 9 fitted here (``tools/fit_erfc32.py``: relative error
4.8e-8, under half a float32 ulp) and ``exp(-y^2)`` split as above: half the passes of
the three intervals, and within 8 float32 ulps of ``math.erfc`` as they are
(tests/test_gelu.py). ``erf`` keeps Cody's intervals in float32 too: ``1 - erfc`` would
lose its few ulps near ``|x| = 0.5``.

The GELU's ``Phi(x) = erfc(-x / sqrt 2) / 2`` is :func:`normal_cdf`. In float64 it is that
expression. In float32 it is the same form fitted to Phi itself, on ``a = |x|``::

    Phi(-a) = t * exp(-a^2 / 2 + F(t)),   t = 1 / (1 + 0.4 a),   Phi(a) = 1 - Phi(-a)

with ``F`` of degree 8 (``tools/fit_erfc32.py --phi``: relative error 8.7e-8) and ``a^2`` not
split: the float32 GELU's own condition is ~x^2 ulps in the tail (``x / sqrt 2`` rounds, and
the erfc form above pays that too), so the split bought nothing there, at a second exp and
a third of the passes. The tests hold ``x Phi(x)`` within ``8 eps (1 + x^2)`` of the exact
value, as the float64 GELU within ``4 eps (1 + x^2)``.
"""

from __future__ import annotations

import numpy as np

from ..validation import as_float_array

__all__ = ["erf", "erfc", "normal_cdf"]

THRESH = 0.46875
SQRPI = 0.56418958354775628695  # 1 / sqrt(pi)
# Cody's coefficients, in the order his Horner loops use them (see _small, _middle, _large).
A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03,
     1.85777706184603153e-1)
B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
     8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
     2.15311535474403846e-8)
D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
     3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
     6.58749161529837803e-4, 1.63153871373020978e-2)
Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
     2.33520497626869185e-3)
# erfc(y) underflows to 0 well before y = 30 in both float32 and float64; clipping there keeps
# y = inf finite in the exp(-y^2) split (inf - inf would be NaN) and gives erfc(inf) = 0.
Y_CLIP = 30.0
# float32: E(t) of the one formula, highest power first (tools/fit_erfc32.py), and where erfc is 0.
E32 = (1.45767217491565571e-01, -6.85629070626785242e-01, 1.16871769751359533e00, -7.13283079367396766e-01,
       -6.51390162865783384e-02, -7.43219845183651362e-03, 3.78188636143506340e-02, 3.85906598045633209e-01,
       9.98726032342443504e-01, -1.26545299632602637e00)
Y_CLIP32 = 10.5
# float32: F(t) of the GELU's Phi, highest power first (tools/fit_erfc32.py --phi), and its p.
F32 = (1.89897046040997719e-01, -9.72448445409923479e-01, 1.94178761858271609e00, -1.74355061144389656e00,
       5.36746323856559737e-01, -1.79185186473390767e-01, 3.71560945771711781e-01, 9.97168147415137596e-01,
       -1.83512293276511285e00)
PHI_P32 = 0.4
SQRT_HALF = 0.70710678118654752440  # sqrt(1/2)
# Elements are taken 512 KiB at a time (64 Ki float64, 128 Ki float32): the temporaries of a
# chunk's passes then fit in a core's 2 MiB L2 cache.
CHUNK_BYTES = 1 << 19


def _horner(t: np.ndarray, lead: float, pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Cody's loop for numerator and denominator together: ``n = (n + a) t``, ``d = (d + b) t``, in place."""
    num, den = lead * t, t.copy()
    for a, b in pairs:
        num += a
        num *= t
        den += b
        den *= t
    return num, den


def _polynomial(t: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """``sum(c t^k)`` by Horner's rule, ``coefficients`` highest power first, in t's dtype."""
    value = t * coefficients[0]
    for c in coefficients[1:-1]:
        value += c
        value *= t
    value += coefficients[-1]
    return value


def _small(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| <= 0.46875: x A(x^2) / B(x^2)."""
    num, den = _horner(x * x, A[4], list(zip(A[:3], B[:3])))
    num += A[3]
    den += B[3]
    num *= x
    num /= den
    return num


def _split_square(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y^2 as z^2 + (y - z)(y + z), z = y rounded down to a multiple of 1/16: z^2 is exact."""
    z = np.trunc(y * 16.0) / 16.0
    return z * z, (y - z) * (y + z)


def _exp_minus_square(y: np.ndarray) -> np.ndarray:
    """exp(-y^2) without the rounding error of y^2: exp(-z^2) exp(-(y - z)(y + z))."""
    exact, rest = _split_square(y)
    return np.exp(-exact) * np.exp(-rest)


def _middle(y: np.ndarray) -> np.ndarray:
    """erfc(y) for 0.46875 < y <= 4: exp(-y^2) C(y) / D(y)."""
    num, den = _horner(y, C[8], list(zip(C[:7], D[:7])))
    num += C[7]
    den += D[7]
    num *= _exp_minus_square(y)
    num /= den
    return num


def _large(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y > 4: exp(-y^2) / y * (1/sqrt(pi) - R(1/y^2) / S(1/y^2) / y^2)."""
    y = np.minimum(y, Y_CLIP)
    ysq = 1.0 / (y * y)
    num, den = _horner(ysq, P[5], list(zip(P[:4], Q[:4])))
    ratio = ysq * (num + P[4]) / (den + Q[4])
    return _exp_minus_square(y) * (SQRPI - ratio) / y


def _erfc_of_abs(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y = |x| > 0.46875 (entries at or below the threshold are left unspecified).

    The middle interval's formula runs on every element (clipped into its interval): one pass
    over the whole array is cheaper than gathering the elements of each interval. The few
    beyond 4 are then gathered for the tail formula. NaN stays NaN (clipping keeps it).
    """
    out = _middle(np.clip(y, THRESH, 4.0))
    large = y > 4.0
    if large.any():
        with np.errstate(under="ignore"):  # exp(-y^2) underflows to 0 in the far tail: that is the answer
            out[large] = _large(y[large])
    return out


def _erfc32_of_abs(y: np.ndarray) -> np.ndarray:
    """erfc(y) for float32 y = |x| >= 0: t exp(-y^2 + E(t)), t = 1 / (1 + y/2). NaN stays NaN."""
    y = np.minimum(y, Y_CLIP32)  # erfc(inf) = 0 without inf - inf in the exp(-y^2) split
    t = 1.0 / (1.0 + 0.5 * y)
    e = _polynomial(t, E32)
    exact, rest = _split_square(y)
    e -= rest
    with np.errstate(under="ignore"):  # exp(-z^2) underflows to 0 in the far tail: that is the answer
        return t * np.exp(-exact) * np.exp(e)


def _normal_cdf32(x: np.ndarray) -> np.ndarray:
    """Phi(x) for float32 x: h = Phi(-|x|) = t exp(-a^2/2 + F(t)), t = 1 / (1 + 0.4 a); then h or 1 - h."""
    a = np.abs(x)
    t = 1.0 / (1.0 + PHI_P32 * a)
    h = _polynomial(t, F32)
    with np.errstate(over="ignore", under="ignore"):  # a^2 overflows, exp underflows: Phi(-a) is then 0
        h -= 0.5 * (a * a)
        np.exp(h, out=h)
    h *= t
    return _blend(x >= 0, 1.0 - h, h)  # NaN: x >= 0 is False, and h is NaN


def _by_chunks(function, x: np.ndarray) -> np.ndarray:
    """``function`` over x's elements, CHUNK_BYTES at a time: the elementwise passes of a chunk stay in cache.

    On 2M float32 elements (a GPT's MLP activations) this is about 1.7x faster than one pass per
    operation over the whole array, which streams it through memory each time.
    """
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    step = CHUNK_BYTES // flat.itemsize
    for start in range(0, flat.size, step):
        out[start : start + step] = function(flat[start : start + step])
    return out.reshape(x.shape)


def _blend(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.where(mask, a, b)`` for finite (or NaN-together) a and b, without a branch per element.

    ``m a + (1 - m) b`` with m = 0 or 1 is exact (a product by 1 or 0, a sum with 0) and runs as
    plain vector arithmetic; ``np.where`` on a random mask is about 10x slower (a mispredicted
    branch per element), which was a third of the GELU's time.
    """
    m = mask.astype(a.dtype)
    return m * a + (1.0 - m) * b


def _erf(x: np.ndarray) -> np.ndarray:
    y = np.abs(x)
    tail = 0.5 - _erfc_of_abs(y) + 0.5
    magnitude = _blend(y <= THRESH, _small(np.minimum(y, THRESH)), tail)  # NaN: in tail (and in _small)
    return np.copysign(magnitude, x)  # erf is odd; copysign also keeps erf(-0.0) = -0.0


def _erfc(x: np.ndarray) -> np.ndarray:
    y = np.abs(x)
    if x.dtype == np.float32:
        tail = _erfc32_of_abs(y)
        return _blend(x < 0, 2.0 - tail, tail)
    tail = _erfc_of_abs(y)
    rest = _blend(x < 0, 2.0 - tail, tail)
    return _blend(y <= THRESH, 1.0 - _small(np.clip(x, -THRESH, THRESH)), rest)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function ``2/sqrt(pi) * integral_0^x exp(-t^2) dt``, elementwise.

    Parameters
    ----------
    x : ndarray, float32 or float64 (integers become float64)

    Returns
    -------
    ndarray of x's shape and dtype, within a few units in the last place of ``math.erf``.
    """
    return _by_chunks(_erf, as_float_array(x, "x"))


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function ``1 - erf(x)``, elementwise, without its cancellation.

    Accurate relative to its own value also in the tail (``erfc(10)`` ~ 2e-45 is
    not ``1 - 1``), which is what the GELU's ``Phi(x) = erfc(-x/sqrt(2)) / 2`` needs
    for large negative ``x``.
    """
    return _by_chunks(_erfc, as_float_array(x, "x"))


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF ``Phi(x) = erfc(-x / sqrt 2) / 2``, elementwise: the exact GELU's.

    float64: that expression (relative accuracy in the tail, where ``1 + erf`` cancels).
    float32: one exponential on ``|x|`` (see the module's docstring), within ``8 eps (1 + x^2)``
    of the exact value, the condition of ``Phi`` there.
    """
    x = as_float_array(x, "x")
    if x.dtype == np.float32:
        return _by_chunks(_normal_cdf32, x)
    return 0.5 * erfc(-SQRT_HALF * x)
