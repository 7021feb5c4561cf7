/* send_many: one non-blocking send() per (socket, bytes) pair, without the GIL.
 *
 * Why this exists: a fan-out to N members costs N send() calls, and on
 * loopback about three quarters of each call is kernel time (TCP transmit,
 * the receiver's TCP processing, waking the receiver). From Python each call
 * also holds the GIL, so one process uses one core however many it has. Here
 * the whole batch runs with the GIL released and, for big batches, on several
 * threads that take chunks from a shared counter, so the kernel work of one
 * broadcast spreads over the machine's cores.
 *
 * Contract (the caller, handlers/fanout/batch_writer.py, keeps it): each fd is a
 * non-blocking stream socket whose user-space write buffer is empty, and
 * nothing else writes to it until this call returns; so a direct send keeps
 * the byte order. Items not sent in full are reported back and the caller
 * hands their remainder to the peer's sink (the event loop's transport).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

#define CHUNK 32             /* items a thread claims at a time */
#define MAX_THREADS 16
#define MIN_ITEMS_PER_THREAD 64

typedef struct {
    int fd;
    PyObject *obj; /* the bytes object, referenced while we use its buffer */
    const char *buf;
    Py_ssize_t len;
    Py_ssize_t result; /* bytes sent, or -errno */
} item_t;

typedef struct {
    item_t *items;
    Py_ssize_t n;
    Py_ssize_t next; /* next unclaimed index, shared by the threads */
} job_t;

static void
run_job(job_t *job)
{
    for (;;) {
        Py_ssize_t start = __atomic_fetch_add(&job->next, CHUNK, __ATOMIC_RELAXED);
        if (start >= job->n) {
            return;
        }
        Py_ssize_t end = start + CHUNK < job->n ? start + CHUNK : job->n;
        for (Py_ssize_t i = start; i < end; i++) {
            item_t *it = &job->items[i];
            if (it->fd < 0) {
                continue; /* -1: not ours to send to; reported as 0 bytes sent */
            }
            ssize_t sent;
            do {
                sent = send(it->fd, it->buf, (size_t)it->len, MSG_DONTWAIT | MSG_NOSIGNAL);
            } while (sent < 0 && errno == EINTR);
            it->result = sent < 0 ? -(Py_ssize_t)errno : (Py_ssize_t)sent;
        }
    }
}

static void *
thread_main(void *arg)
{
    run_job((job_t *)arg);
    return NULL;
}

PyDoc_STRVAR(send_many_doc,
"send_many(fds, datas, threads=1) -> list[tuple[int, int]]\n\n"
"Send datas[i] on socket fds[i] for every i, non-blocking, with the GIL\n"
"released, on up to `threads` threads; an fd of -1 is skipped. Returns (i,\n"
"result) for each item not sent in full: result is the number of bytes sent\n"
"(0 for a skipped item), or -errno.");

static PyObject *
send_many(PyObject *self, PyObject *args)
{
    PyObject *fds_arg, *datas_arg;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "OO|i:send_many", &fds_arg, &datas_arg, &threads)) {
        return NULL;
    }
    PyObject *fds = PySequence_Fast(fds_arg, "fds must be a sequence");
    if (fds == NULL) {
        return NULL;
    }
    PyObject *datas = PySequence_Fast(datas_arg, "datas must be a sequence");
    if (datas == NULL) {
        Py_DECREF(fds);
        return NULL;
    }
    PyObject *result = NULL;
    item_t *items = NULL;
    Py_ssize_t held = 0; /* data objects we hold a reference to */
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fds);
    if (PySequence_Fast_GET_SIZE(datas) != n) {
        PyErr_SetString(PyExc_ValueError, "fds and datas differ in length");
        goto done;
    }
    items = PyMem_Malloc(sizeof(item_t) * (size_t)(n ? n : 1));
    if (items == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(fds, i));
        if (fd == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (fd < -1 || fd > INT_MAX) {
            PyErr_Format(PyExc_ValueError, "bad file descriptor %ld", fd);
            goto done;
        }
        PyObject *data = PySequence_Fast_GET_ITEM(datas, i);
        if (!PyBytes_Check(data)) {
            PyErr_Format(PyExc_TypeError, "datas[%zd] is %.100s, not bytes", i,
                         Py_TYPE(data)->tp_name);
            goto done;
        }
        /* Our own reference: the list may change once the GIL is released. */
        Py_INCREF(data);
        held = i + 1;
        items[i].fd = (int)fd;
        items[i].obj = data;
        items[i].buf = PyBytes_AS_STRING(data);
        items[i].len = PyBytes_GET_SIZE(data);
        items[i].result = 0;
    }

    job_t job = {items, n, 0};
    if (threads > MAX_THREADS) {
        threads = MAX_THREADS;
    }
    if (threads > n / MIN_ITEMS_PER_THREAD) {
        threads = (int)(n / MIN_ITEMS_PER_THREAD);
    }
    pthread_t helpers[MAX_THREADS];
    int started = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&helpers[started], NULL, thread_main, &job) != 0) {
            break; /* fewer helpers: the work still gets done below */
        }
        started++;
    }
    run_job(&job);
    for (int t = 0; t < started; t++) {
        pthread_join(helpers[t], NULL);
    }
    Py_END_ALLOW_THREADS

    result = PyList_New(0);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (items[i].result == items[i].len) {
            continue;
        }
        PyObject *pair = Py_BuildValue("(nn)", i, items[i].result);
        if (pair == NULL || PyList_Append(result, pair) < 0) {
            Py_XDECREF(pair);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(pair);
    }

done:
    for (Py_ssize_t i = 0; i < held; i++) {
        Py_DECREF(items[i].obj);
    }
    PyMem_Free(items);
    Py_DECREF(fds);
    Py_DECREF(datas);
    return result;
}

static PyMethodDef methods[] = {
    {"send_many", send_many, METH_VARARGS, send_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "handlers.fanout._send_many",
    "Batch non-blocking sends without the GIL (see handlers/fanout/batch_writer.py).",
    -1,
    methods,
};

PyMODINIT_FUNC
PyInit__send_many(void)
{
    return PyModule_Create(&module);
}
